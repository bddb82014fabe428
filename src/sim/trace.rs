//! The simulator's trace: every event that shapes a run is hashed (the
//! trace hash a replay must reproduce), and with `--verbose` a
//! human-readable line is kept too.
//!
//! What is hashed is a [`TraceEvent`]: the virtual time, the event's code
//! ([`TraceEvent::code`]), two numbers and some bytes. The codes and the
//! layout are those of the bare integers the simulator used before the
//! events had names, so trace hashes of old runs still compare equal; never
//! renumber or reorder them.

use super::clients::QueryPurpose;
use super::network::Endpoint;
use crate::consensus::messages::Message;
use crate::crypto::Digest;
use crate::types::{ReplicaId, Time};

/// One hashed event of a run.
#[derive(Clone, Copy, Debug)]
pub(super) enum TraceEvent<'a> {
    /// A message reaches an endpoint (hashed with its kind's name).
    Deliver {
        from: Endpoint,
        to: Endpoint,
        kind: &'static str,
    },
    /// A node's timer fires (by node slot).
    Wake { slot: usize },
    /// A replica goes down: a crash, a clean stop, a wipe, a crash in a write.
    Down { replica: ReplicaId },
    /// A replica restarts from its store.
    Restart { replica: ReplicaId },
    /// The faults stop: the network is reliable, every replica restarts.
    FaultsEnd,
    /// A client sends its outstanding transfer (first time or again).
    ClientSend { client: usize, nonce: u64 },
    /// A client accepts its transfer's result (f+1 matching replies).
    ClientAccept { client: usize, nonce: u64 },
    /// Raw bytes from a Byzantine replica arrive (the first 64 are hashed).
    Frame {
        from: ReplicaId,
        to: ReplicaId,
        bytes: &'a [u8],
    },
    /// A Byzantine replica's strategy ticks.
    AdversaryTick { replica: ReplicaId },
    /// A crash is armed inside a replica's `nth` write (code 10, shared
    /// with [`TraceEvent::ByzantineClientAct`]).
    CrashArmed {
        replica: ReplicaId,
        nth: u32,
        applied: bool,
    },
    /// The Byzantine client picks its action (code 10, shared with
    /// [`TraceEvent::CrashArmed`]).
    ByzantineClientAct { action: u64, nonce: u64 },
    /// A replica's client service refuses a client's request (it would fail).
    Refused {
        client: usize,
        replica: ReplicaId,
        tx_id: Digest,
    },
    /// A replica's client service says "busy" to a client's request.
    Busy {
        client: usize,
        replica: ReplicaId,
        tx_id: Digest,
    },
    /// A client sends its request again to one replica (after a "busy").
    Resend {
        client: usize,
        replica: ReplicaId,
        tx_id: Digest,
    },
    /// A client starts a balance query.
    QueryStart {
        client: usize,
        id: u64,
        purpose: QueryPurpose,
    },
    /// A client's query reaches a replica.
    QueryArrive {
        client: usize,
        replica: ReplicaId,
        id: u64,
    },
    /// A replica's answer to a query reaches the client.
    QueryAnswer {
        client: usize,
        replica: ReplicaId,
        id: u64,
    },
    /// A client's transfer had a nonce used already: it signs it again.
    NonceUsed { client: usize, nonce: u64 },
    /// A frame of `len` bytes joins a replica's outbound queue for a peer
    /// that never reads.
    QueuedUnread {
        from: ReplicaId,
        to: ReplicaId,
        len: usize,
    },
}

impl TraceEvent<'_> {
    /// The event's number in the hash (one byte). These are the integers
    /// the simulator hashed before the events were named; 10 meant two
    /// things then (an armed crash and the Byzantine client's action) and
    /// still does, so trace hashes stay comparable across the change.
    pub(super) fn code(&self) -> u8 {
        match self {
            TraceEvent::Deliver { .. } => 1,
            TraceEvent::Wake { .. } => 2,
            TraceEvent::Down { .. } => 3,
            TraceEvent::Restart { .. } => 4,
            TraceEvent::FaultsEnd => 5,
            TraceEvent::ClientSend { .. } => 6,
            TraceEvent::ClientAccept { .. } => 7,
            TraceEvent::Frame { .. } => 8,
            TraceEvent::AdversaryTick { .. } => 9,
            TraceEvent::CrashArmed { .. } | TraceEvent::ByzantineClientAct { .. } => 10,
            TraceEvent::Refused { .. } => 11,
            TraceEvent::Busy { .. } => 12,
            TraceEvent::Resend { .. } => 13,
            TraceEvent::QueryStart { .. } => 14,
            TraceEvent::QueryArrive { .. } => 15,
            TraceEvent::QueryAnswer { .. } => 16,
            TraceEvent::NonceUsed { .. } => 17,
            TraceEvent::QueuedUnread { .. } => 18,
        }
    }

    /// The event's two numbers in the hash.
    fn operands(&self) -> (u64, u64) {
        match *self {
            TraceEvent::Deliver { from, to, .. } => (endpoint_code(from), endpoint_code(to)),
            TraceEvent::Wake { slot } => (slot as u64, 0),
            TraceEvent::Down { replica }
            | TraceEvent::Restart { replica }
            | TraceEvent::AdversaryTick { replica } => (replica.0 as u64, 0),
            TraceEvent::FaultsEnd => (0, 0),
            TraceEvent::ClientSend { client, nonce }
            | TraceEvent::ClientAccept { client, nonce }
            | TraceEvent::NonceUsed { client, nonce } => (client as u64, nonce),
            TraceEvent::Frame { from, to, .. } | TraceEvent::QueuedUnread { from, to, .. } => {
                (from.0 as u64, to.0 as u64)
            }
            TraceEvent::CrashArmed { replica, nth, .. } => (replica.0 as u64, nth as u64),
            TraceEvent::ByzantineClientAct { action, nonce } => (action, nonce),
            TraceEvent::Refused {
                client, replica, ..
            }
            | TraceEvent::Busy {
                client, replica, ..
            }
            | TraceEvent::Resend {
                client, replica, ..
            }
            | TraceEvent::QueryArrive {
                client, replica, ..
            }
            | TraceEvent::QueryAnswer {
                client, replica, ..
            } => (client as u64, replica.0 as u64),
            TraceEvent::QueryStart { client, id, .. } => (client as u64, id),
        }
    }

    /// Feeds the event, at virtual time `now`, to `hasher`: the time, the
    /// code, the two numbers (little-endian) and the event's bytes.
    fn hash_into(&self, now: Time, hasher: &mut blake3::Hasher) {
        let (a, b) = self.operands();
        hasher.update(&now.0.to_le_bytes());
        hasher.update(&[self.code()]);
        hasher.update(&a.to_le_bytes());
        hasher.update(&b.to_le_bytes());
        match *self {
            TraceEvent::Deliver { kind, .. } => {
                hasher.update(kind.as_bytes());
            }
            TraceEvent::Frame { bytes, .. } => {
                hasher.update(&bytes[..bytes.len().min(64)]);
            }
            TraceEvent::CrashArmed { applied, .. } => {
                hasher.update(&[applied as u8]);
            }
            TraceEvent::Refused { tx_id, .. }
            | TraceEvent::Busy { tx_id, .. }
            | TraceEvent::Resend { tx_id, .. } => {
                hasher.update(&tx_id.0);
            }
            TraceEvent::QueryStart { purpose, .. } => {
                hasher.update(&[purpose as u8]);
            }
            TraceEvent::QueryArrive { id, .. } | TraceEvent::QueryAnswer { id, .. } => {
                hasher.update(&id.to_le_bytes());
            }
            TraceEvent::QueuedUnread { len, .. } => {
                hasher.update(&(len as u64).to_le_bytes());
            }
            TraceEvent::Wake { .. }
            | TraceEvent::Down { .. }
            | TraceEvent::Restart { .. }
            | TraceEvent::FaultsEnd
            | TraceEvent::ClientSend { .. }
            | TraceEvent::ClientAccept { .. }
            | TraceEvent::AdversaryTick { .. }
            | TraceEvent::ByzantineClientAct { .. }
            | TraceEvent::NonceUsed { .. } => {}
        }
    }
}

/// An endpoint's number in the hash.
fn endpoint_code(e: Endpoint) -> u64 {
    match e {
        Endpoint::Replica(r) => r.0 as u64,
        Endpoint::Client(c) => 1_000 + c as u64,
        Endpoint::Twin => 999,
        Endpoint::ByzantineClient => 2_000,
    }
}

/// A run's trace: the hash of its events and, if verbose, its lines.
pub(super) struct Trace {
    hasher: blake3::Hasher,
    lines: Option<Vec<String>>,
}

impl Trace {
    pub(super) fn new(verbose: bool) -> Trace {
        Trace {
            hasher: blake3::Hasher::new(),
            lines: verbose.then(Vec::new),
        }
    }

    /// Hashes `event`, which happened at `now`.
    pub(super) fn record(&mut self, now: Time, event: TraceEvent<'_>) {
        event.hash_into(now, &mut self.hasher);
    }

    /// Keeps a human-readable line (made only if the trace is verbose).
    pub(super) fn log(&mut self, now: Time, line: impl FnOnce() -> String) {
        if let Some(t) = &mut self.lines {
            t.push(format!("{:>9.3}s {}", now.0 as f64 / 1e6, line()));
        }
    }

    /// The trace hash, and the lines kept (none unless verbose).
    pub(super) fn finish(&mut self) -> (Digest, Vec<String>) {
        let hash = Digest(*self.hasher.finalize().as_bytes());
        (hash, self.lines.take().unwrap_or_default())
    }
}

/// A message as a trace line shows it.
pub(super) fn describe(m: &Message) -> String {
    use crate::consensus::messages::*;
    use crate::crypto::Payload;
    match m {
        Message::PrePrepare { pre_prepare, .. } => PrePrepare::decode(&pre_prepare.payload)
            .map(|p| format!("pre-prepare {:?} {:?} {:?}", p.view, p.seq, p.digest))
            .unwrap_or_else(|_| "pre-prepare (malformed)".into()),
        Message::Prepare(p) => Prepare::decode(&p.payload)
            .map(|p| format!("prepare {:?} {:?} {:?}", p.view, p.seq, p.digest))
            .unwrap_or_else(|_| "prepare (malformed)".into()),
        Message::Commit(c) => Commit::decode(&c.payload)
            .map(|c| format!("commit {:?} {:?} {:?}", c.view, c.seq, c.digest))
            .unwrap_or_else(|_| "commit (malformed)".into()),
        Message::Checkpoint(c) => Checkpoint::decode(&c.payload)
            .map(|c| format!("checkpoint {:?} {:?}", c.seq, c.digest))
            .unwrap_or_else(|_| "checkpoint (malformed)".into()),
        Message::ViewChange(v) => ViewChange::decode(&v.payload)
            .map(|v| {
                format!(
                    "view-change to {:?} stable {:?} prepared {}",
                    v.new_view,
                    v.stable_seq,
                    v.prepared.len()
                )
            })
            .unwrap_or_else(|_| "view-change (malformed)".into()),
        Message::NewView(v) => NewView::decode(&v.payload)
            .map(|v| {
                format!(
                    "new-view {:?} with {} pre-prepares",
                    v.view,
                    v.pre_prepares.len()
                )
            })
            .unwrap_or_else(|_| "new-view (malformed)".into()),
        Message::Suspect(s) => Suspect::decode(&s.payload)
            .map(|s| format!("suspect {:?}", s.view))
            .unwrap_or_else(|_| "suspect (malformed)".into()),
        Message::Request(tx) => format!("request nonce {} from {:?}", tx.nonce, tx.from),
        Message::NewViewRequest { view } => format!("new-view-request from {view:?}"),
        Message::Fetch { from, to } => format!("fetch {from:?}..={to:?}"),
        Message::Batches(b) => format!(
            "batches {:?}",
            b.iter().map(|b| b.seq.0).collect::<Vec<_>>()
        ),
        Message::Reply(_) => "reply".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layout of one event in the hash is the one the bare integers had.
    #[test]
    fn an_event_hashes_as_its_code_numbers_and_bytes() {
        let now = Time(1_234);
        let mut named = blake3::Hasher::new();
        TraceEvent::QueryArrive {
            client: 2,
            replica: ReplicaId(3),
            id: 9,
        }
        .hash_into(now, &mut named);
        let mut bare = blake3::Hasher::new();
        bare.update(&now.0.to_le_bytes());
        bare.update(&[15]);
        bare.update(&2u64.to_le_bytes());
        bare.update(&3u64.to_le_bytes());
        bare.update(&9u64.to_le_bytes());
        assert_eq!(named.finalize(), bare.finalize());
    }

    /// Code 10 keeps both meanings, as two variants.
    #[test]
    fn code_10_names_two_events() {
        let armed = TraceEvent::CrashArmed {
            replica: ReplicaId(1),
            nth: 4,
            applied: true,
        };
        let act = TraceEvent::ByzantineClientAct {
            action: 1,
            nonce: 4,
        };
        assert_eq!((armed.code(), act.code()), (10, 10));
        assert_eq!(armed.operands(), act.operands());
    }
}
