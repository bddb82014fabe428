//! The runtime's adversary seam: the one place a `--byzantine` replica's
//! strategy touches the event loop.
//!
//! The runtime hands an [`Egress`] every message the node wants to send,
//! every decoded message from a peer, the honest answer to every client
//! query and the loop's next deadline, and calls its tick when that
//! deadline passes. It builds the seam once, in [`Egress::new`], and calls
//! the same methods in every build:
//!
//! * without the cargo feature `byzantine`, `Egress` is a zero-sized type
//!   whose inlined methods pass everything through unchanged: the honest
//!   path compiles as if the seam were not there;
//! * with it, `Egress` holds the [`byzantine::Adversary`] of a replica
//!   started as `Role::Byzantine` (and passes everything through, like the
//!   honest one, for a replica started as `Role::Honest`).
//!
//! Why a seam rather than `#[cfg]` at each call: the event loop reads the
//! same in both builds, and what the adversary may touch is this file's
//! list of methods.

use super::Role;
use crate::client::proto::{ClientRequest, ClientResponse};
use crate::consensus::messages::Message;
use crate::crypto::NetworkId;
use crate::net::Transport;
use crate::node::config::RuntimeConfig;
use crate::node::{Node, Outgoing};
use crate::storage::rocks::RocksStore;
use crate::types::ReplicaId;
use tokio::time::Instant;

#[cfg(feature = "byzantine")]
use super::{
    byzantine::{Adversary, CoreState},
    core_now,
};

/// The honest build's seam: passes everything through.
#[cfg(not(feature = "byzantine"))]
#[derive(Debug)]
pub(super) struct Egress;

#[cfg(not(feature = "byzantine"))]
impl Egress {
    /// The seam for `role` (this build has only [`Role::Honest`]).
    #[inline(always)]
    pub fn new(role: Role, _cfg: &RuntimeConfig, _network: NetworkId) -> Egress {
        match role {
            Role::Honest => Egress,
        }
    }

    /// What of `out` the runtime must still deliver: all of it.
    #[inline(always)]
    pub fn outgoing(
        &mut self,
        _node: &Node<RocksStore>,
        _transport: &Transport,
        out: Outgoing,
    ) -> Option<Outgoing> {
        Some(out)
    }

    /// A decoded message from a peer, before the node handles it.
    #[inline(always)]
    pub fn incoming(&mut self, _node: &Node<RocksStore>, _from: ReplicaId, _message: &Message) {}

    /// Turns the honest answer to a client query into the one sent: the
    /// honest one.
    #[inline(always)]
    pub fn answers(
        &mut self,
        _node: &Node<RocksStore>,
    ) -> impl FnOnce(&ClientRequest, ClientResponse) -> ClientResponse {
        |_, honest| honest
    }

    /// The loop's deadline given the core's: the core's.
    #[inline(always)]
    pub fn deadline(&self, deadline: Option<Instant>) -> Option<Instant> {
        deadline
    }

    /// Runs the seam's own tick if it is due; returns whether it was:
    /// never.
    #[inline(always)]
    pub fn tick(&mut self, _node: &Node<RocksStore>, _transport: &Transport) -> bool {
        false
    }

    /// Logs what the seam did, at shutdown: nothing to log.
    #[inline(always)]
    pub fn log_stopped(&self, _me: ReplicaId) {}
}

/// The `byzantine` build's seam: routes through the replica's adversary,
/// if it has one.
#[cfg(feature = "byzantine")]
pub(super) struct Egress {
    adversary: Option<Adversary>,
}

#[cfg(feature = "byzantine")]
impl Egress {
    /// The seam for `role`: for [`Role::Byzantine`], the adversary of that
    /// kind (announced in the log with its seed).
    pub fn new(role: Role, cfg: &RuntimeConfig, network: NetworkId) -> Egress {
        let kind = match role {
            Role::Honest => return Egress { adversary: None },
            Role::Byzantine(kind) => kind,
        };
        let created = Adversary::new(
            kind,
            cfg.me,
            cfg.key.clone(),
            network,
            cfg.genesis.cluster,
            cfg.genesis.config().request_timeout_ms,
        );
        let adversary = created.map(|(adversary, seed)| {
            tracing::warn!(
                event = "byzantine",
                replica = %cfg.me,
                behaviour = kind.name(),
                seed,
                "this replica is BYZANTINE: its outgoing traffic passes through the '{}' adversary",
                kind.name()
            );
            adversary
        });
        Egress { adversary }
    }

    /// Where the honest core stands, for the strategy's context.
    fn core_state(node: &Node<RocksStore>) -> CoreState {
        CoreState {
            view: node.replica().view(),
            height: node.height(),
            now: core_now(),
        }
    }

    /// Routes a message the node wants to send through the adversary, if
    /// this replica has one; returns what the honest path must still
    /// deliver (client replies the strategy lets pass).
    pub fn outgoing(
        &mut self,
        node: &Node<RocksStore>,
        transport: &Transport,
        out: Outgoing,
    ) -> Option<Outgoing> {
        let Some(adversary) = self.adversary.as_mut() else {
            return Some(out);
        };
        let core = Egress::core_state(node);
        match out {
            Outgoing::ToReplica { to, message } => {
                adversary.outgoing(transport, core, to, message);
                None
            }
            Outgoing::Broadcast(message) => {
                adversary.broadcast(transport, core, &message);
                None
            }
            Outgoing::ToClient { .. } => adversary.replies_to_clients().then_some(out),
        }
    }

    /// Shows a decoded message from a peer to the adversary, before the
    /// node handles it.
    pub fn incoming(&mut self, node: &Node<RocksStore>, from: ReplicaId, message: &Message) {
        if let Some(adversary) = self.adversary.as_mut() {
            adversary.incoming(Egress::core_state(node), from, message);
        }
    }

    /// Turns the honest answer to a client query into the one sent: what
    /// the adversary makes of it, if there is one.
    pub fn answers(
        &mut self,
        node: &Node<RocksStore>,
    ) -> impl FnOnce(&ClientRequest, ClientResponse) -> ClientResponse + '_ {
        let core = Egress::core_state(node);
        let adversary = &mut self.adversary;
        move |query, honest| match adversary.as_mut() {
            Some(adversary) => adversary.answer_query(core, query, honest),
            None => honest,
        }
    }

    /// The earlier of the core's deadline and the adversary's next tick.
    pub fn deadline(&self, deadline: Option<Instant>) -> Option<Instant> {
        match (&self.adversary, deadline) {
            (None, d) => d,
            (Some(a), None) => Some(a.next_tick()),
            (Some(a), Some(d)) => Some(d.min(a.next_tick())),
        }
    }

    /// Runs the adversary's tick if it is due; returns whether it was.
    pub fn tick(&mut self, node: &Node<RocksStore>, transport: &Transport) -> bool {
        match self.adversary.as_mut() {
            Some(adversary) => adversary.tick_if_due(transport, Egress::core_state(node)),
            None => false,
        }
    }

    /// Logs, at shutdown, what the adversary did.
    pub fn log_stopped(&self, me: ReplicaId) {
        let Some(a) = &self.adversary else {
            return;
        };
        let s = a.stats();
        tracing::warn!(
            event = "byzantine-stopped",
            replica = %me,
            behaviour = a.kind().name(),
            wanted = s.honest,
            sent = s.sent,
            injected = s.injected,
            delayed = s.delayed,
            raw_frames = s.raw_frames,
            delayed_dropped = s.delayed_dropped,
            "Byzantine adversary: messages the honest node wanted to send (per recipient) vs transmissions made"
        );
    }
}
