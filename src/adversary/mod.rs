//! Byzantine replicas (L5): strategies that wrap an honest replica and decide
//! what actually leaves it.
//!
//! A Byzantine replica here is an honest [`Node`](crate::node::Node) whose
//! outgoing messages pass through a [`Strategy`]. The strategy holds the
//! replica's own signing key and may drop, delay, re-address, rewrite and
//! re-sign anything, and inject messages of its own on a timer — everything a
//! malicious replica with a valid key can do, and nothing more: there is no
//! hook in the honest code, and the honest replicas receiving these messages
//! run the unchanged protocol. The simulator drives strategies
//! deterministically from its seed; `pbft-replica start --byzantine` (cargo
//! feature `byzantine`) drives them over QUIC.
//!
//! Strategies of the same kind running on several Byzantine replicas share a
//! [`Collusion`] board, so with more than f of them they can attack together
//! (the negative control that proves the checker can fail).
//!
//! `catalogue.rs` names every adversary ([`Kind`], [`CATALOGUE`]); the
//! strategies live in one file per concern (its module doc has the map):
//! equivocation, omission, tampering, forgery, view change, flooding, and
//! lying answers to clients.

mod catalogue;
mod equivocation;
mod flooding;
mod forgery;
mod lying_answers;
mod omission;
mod tampering;
mod view_change;

use crate::cluster::Cluster;
use crate::consensus::messages::{Commit, Message, Prepare};
use crate::crypto::{Digest, KeyPair, NetworkId, Payload, Signed};
use crate::types::{ReplicaId, Seq, Time, View};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

pub use catalogue::{by_name, Kind, CATALOGUE};

/// What goes on the wire: a message, or raw bytes that claim to be a frame.
#[derive(Clone, Debug)]
pub enum Wire {
    Message(Message),
    /// Bytes a receiver must decode (and may reject) as a frame.
    Frame(Vec<u8>),
}

/// One transmission a strategy asks for.
#[derive(Clone, Debug)]
pub struct Send {
    pub to: ReplicaId,
    pub wire: Wire,
    /// Hold the message back this long before sending it.
    pub delay_ms: u64,
}

impl Send {
    pub fn now(to: ReplicaId, message: Message) -> Send {
        Send {
            to,
            wire: Wire::Message(message),
            delay_ms: 0,
        }
    }
}

/// Shared knowledge of colluding Byzantine replicas.
#[derive(Clone, Debug, Default)]
pub struct Collusion {
    /// For an equivocated slot `(view, seq)`: the digest shown to the first
    /// group of honest replicas and the alternative shown to the second.
    pub equivocations: BTreeMap<(View, Seq), (Digest, Digest)>,
}

/// Everything a strategy may use: the wrapped replica's identity and key,
/// where its honest core stands, a seeded RNG and the collusion board.
pub struct Ctx<'a> {
    pub me: ReplicaId,
    pub key: &'a KeyPair,
    pub network: NetworkId,
    pub cluster: Cluster,
    /// The honest core's current view.
    pub view: View,
    /// The honest core's last executed seq.
    pub height: Seq,
    pub now: Time,
    pub request_timeout_ms: u64,
    /// The other Byzantine replicas (colluders), `me` excluded.
    pub colluders: &'a [ReplicaId],
    /// Frames a flooding strategy sends each replica per tick: the
    /// simulator keeps it small (every frame costs it real crypto), a real
    /// process sends as many as a link carries.
    pub flood_per_tick: usize,
    pub rng: &'a mut ChaCha8Rng,
    pub collusion: &'a mut Collusion,
}

impl Ctx<'_> {
    /// Signs `value` with our own (valid) key.
    pub fn sign<T: Payload>(&self, value: T) -> Signed<T> {
        self.key.sign(self.network, self.me, value).into_signed()
    }
    /// Every replica but us.
    pub fn others(&self) -> Vec<ReplicaId> {
        self.cluster.replicas().filter(|r| *r != self.me).collect()
    }
    /// Replicas that are neither us nor a colluder, in id order.
    pub fn honest(&self) -> Vec<ReplicaId> {
        self.cluster
            .replicas()
            .filter(|r| *r != self.me && !self.colluders.contains(r))
            .collect()
    }
    pub fn is_primary(&self) -> bool {
        self.cluster.primary(self.view) == self.me
    }
}

/// How a Byzantine replica behaves.
pub trait Strategy: std::marker::Send {
    /// One message the honest core wants to send to `to`; returns what is
    /// actually sent (possibly nothing, possibly to others, possibly more).
    fn outgoing(&mut self, ctx: &mut Ctx, to: ReplicaId, message: Message) -> Vec<Send>;
    /// A message arriving at the replica (before its core sees it).
    fn incoming(&mut self, _ctx: &mut Ctx, _from: ReplicaId, _message: &Message) {}
    /// Called every [`TICK_MS`]: messages the adversary injects on its own.
    fn tick(&mut self, _ctx: &mut Ctx) -> Vec<Send> {
        Vec::new()
    }
    /// Replies to clients pass unless the strategy withholds them.
    fn replies_to_clients(&self) -> bool {
        true
    }
    /// A client's query (balance and nonce, a transaction, a block, the
    /// status) and the answer the replica's honest service gives; returns
    /// what is answered instead. Query answers are unsigned, so a Byzantine
    /// replica may say anything: clients combine several replicas' answers.
    fn answer_query(
        &mut self,
        _ctx: &mut Ctx,
        _request: &crate::client::proto::ClientRequest,
        honest: crate::client::proto::ClientResponse,
    ) -> crate::client::proto::ClientResponse {
        honest
    }
}

/// Period of [`Strategy::tick`].
pub const TICK_MS: u64 = 50;

// ----- helpers the strategies share ---------------------------------------------

fn pass(to: ReplicaId, message: Message) -> Vec<Send> {
    vec![Send::now(to, message)]
}

fn random_digest(ctx: &mut Ctx) -> Digest {
    Digest(ctx.rng.gen())
}

/// Honest replicas split in two: the first (larger) group and the second.
fn in_second_group(ctx: &Ctx, to: ReplicaId) -> bool {
    let honest = ctx.honest();
    let split = honest.len().div_ceil(2);
    honest[split..].contains(&to)
}

/// Our own vote as (view, seq, digest), if `message` is one.
fn own_vote(ctx: &Ctx, message: &Message) -> Option<(u8, View, Seq, Digest)> {
    match message {
        Message::Prepare(p) if p.signer == ctx.me => Prepare::decode(&p.payload)
            .ok()
            .map(|p| (1, p.view, p.seq, p.digest)),
        Message::Commit(c) if c.signer == ctx.me => Commit::decode(&c.payload)
            .ok()
            .map(|c| (2, c.view, c.seq, c.digest)),
        _ => None,
    }
}

/// Re-signs one of our votes with other fields.
fn vote(ctx: &Ctx, kind: u8, view: View, seq: Seq, digest: Digest) -> Message {
    if kind == 1 {
        Message::Prepare(ctx.sign(Prepare { view, seq, digest }))
    } else {
        Message::Commit(ctx.sign(Commit { view, seq, digest }))
    }
}

fn random_signature(ctx: &mut Ctx) -> [u8; 64] {
    let mut s = [0u8; 64];
    ctx.rng.fill(&mut s[..]);
    s
}
