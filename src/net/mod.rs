//! QUIC transport (L4): the replica mesh and the client endpoint.
//!
//! # Concept
//!
//! Replicas talk QUIC (quinn) with **mutual TLS 1.3**. There is no CA: each
//! process presents a self-signed certificate made from its own ed25519 key and
//! each side *pins* the other's key against genesis (`net::tls` explains the
//! verifiers). A process whose key is not in genesis cannot complete a
//! handshake, so it can neither send nor receive a single frame.
//!
//! * **One connection per replica pair.** If both sides dialled, every pair
//!   would end up with two connections (and a race over which to use). The
//!   rule is simple and needs no negotiation: the *lower* `ReplicaId` dials
//!   the higher one, the higher one only accepts, and both directions then use
//!   that one connection. A newer accepted connection from the same peer (it
//!   restarted) replaces the old one; a connection dialled against the rule
//!   is closed.
//! * **Reconnect** runs in one task per higher peer, with jittered exponential
//!   backoff (`reconnect_min..reconnect_max`) so restarted clusters don't
//!   dial in lock-step, and every dial is wrapped in `dial_timeout` (quinn
//!   would otherwise wait out the idle timeout on a dead peer). Keep-alives
//!   below the idle timeout keep quiet connections open and expose dead peers.
//! * **Framing.** A frame travels as a record `len: u32 LE ‖ frame` on a
//!   unidirectional stream. Frames up to 64 KiB (every consensus message)
//!   share one long-lived stream per connection and direction, and the frames
//!   ready together leave in one write: a stream per frame cost both sides a
//!   task, two timers and quinn's stream set-up for every PREPARE and COMMIT
//!   (≈ 12 streams per block per replica). A longer frame (state transfer,
//!   fetched blocks) gets a stream of its own so it never holds consensus
//!   messages up behind it. A record over `frame_bytes_max` is refused: its
//!   bytes are read in chunks and dropped, never buffered, and the stream
//!   goes on. A write that fails or times out resets its stream (the peer
//!   never takes a truncated record for a frame) and the next write opens
//!   another. Frames are opaque bytes here; the node decodes them
//!   (`codec::decode_frame`). Frames on the shared stream arrive in order;
//!   a long one may overtake them or be overtaken, and PBFT does not need
//!   order.
//! * **Bounded everything.** Each peer has a bounded outbound queue that drops
//!   its *oldest* frame when full (PBFT retransmits, and newer messages are
//!   more useful); the channel to the node is bounded and fed with `try_send`
//!   (a full channel drops the frame, never blocks a reader); concurrent
//!   reads and writes per connection are capped, as are concurrent
//!   handshakes. Every drop is counted in [`NetStats`].
//!
//! Clients use a separate port and ALPN (`net::client`): a session stream per
//! connection carrying numbered request and response records.

mod addr;
mod client;
#[cfg(feature = "byzantine")]
pub mod hostile;
mod inbound;
mod peer;
mod share;
mod tls;

#[cfg(test)]
mod tests;

pub use crate::addr::PeerAddr;
pub use addr::{NameTable, Resolver};
pub use client::{ClientConnector, ClientLimits, ClientRequest, ClientServer, Responder, Screen};
pub use inbound::{Inbound, TryRecvError};
/// The simulator bounds a peer's outbound queue as the transport does.
pub(crate) use peer::peer_bytes_max;
pub use peer::Transport;

use crate::crypto::PublicKey;
use crate::types::ReplicaId;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Static description of one replica, from genesis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    pub id: ReplicaId,
    pub public_key: PublicKey,
    /// Its replica-to-replica (mesh) address, as genesis names it (a name
    /// is resolved again at every dial).
    pub addr: PeerAddr,
}

/// Configuration of the replica mesh.
#[derive(Clone, Debug)]
pub struct NetConfig {
    pub me: ReplicaId,
    /// The replica-to-replica QUIC/UDP address to bind.
    pub listen: SocketAddr,
    /// All replicas including me; `peers[i].id == ReplicaId(i)`.
    pub peers: Vec<PeerInfo>,
    /// Bound on one dial (handshake included).
    pub dial_timeout: Duration,
    /// A connection with no traffic for this long is considered dead.
    pub idle_timeout: Duration,
    /// Keep-alive interval; must be below `idle_timeout`.
    pub keep_alive: Duration,
    /// First reconnect delay (jittered, doubled per failure).
    pub reconnect_min: Duration,
    /// Largest reconnect delay.
    pub reconnect_max: Duration,
    /// Outbound frames queued per peer; the oldest is dropped when full.
    pub peer_queue_max: usize,
    /// Largest inbound frame; larger ones are refused and counted.
    pub frame_bytes_max: usize,
    /// Capacity of the channel of inbound frames to the node.
    pub inbound_queue_max: usize,
    /// How peers' names are looked up.
    pub resolver: Resolver,
}

impl NetConfig {
    /// A config with the default timeouts and bounds.
    pub fn new(me: ReplicaId, listen: SocketAddr, peers: Vec<PeerInfo>) -> NetConfig {
        NetConfig {
            me,
            listen,
            peers,
            dial_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(10),
            keep_alive: Duration::from_secs(2),
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
            peer_queue_max: 4096,
            frame_bytes_max: crate::codec::FRAME_BYTES_MAX,
            inbound_queue_max: 8192,
            resolver: Resolver::System,
        }
    }

    /// Checks the invariants the transport relies on.
    pub fn validate(&self) -> Result<(), NetError> {
        let bad = |s: String| Err(NetError::Config(s));
        if self.me.index() >= self.peers.len() {
            return bad(format!(
                "me={} but only {} peers",
                self.me,
                self.peers.len()
            ));
        }
        for (i, p) in self.peers.iter().enumerate() {
            if p.id.index() != i {
                return bad(format!("peers[{i}] has id {}", p.id));
            }
            if self.peers[..i].iter().any(|q| q.public_key == p.public_key) {
                return bad(format!("replica {i} shares its key with another replica"));
            }
        }
        if self.keep_alive.is_zero() || self.keep_alive >= self.idle_timeout {
            return bad("keep_alive must be non-zero and below idle_timeout".into());
        }
        if self.dial_timeout.is_zero() || self.reconnect_min.is_zero() {
            return bad("dial_timeout and reconnect_min must be non-zero".into());
        }
        if self.reconnect_max < self.reconnect_min {
            return bad("reconnect_max must be at least reconnect_min".into());
        }
        if self.peer_queue_max == 0 || self.inbound_queue_max == 0 || self.frame_bytes_max == 0 {
            return bad("queue and frame bounds must be non-zero".into());
        }
        Ok(())
    }
}

/// Counters of one peer (the entry for `me` stays zero).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerStats {
    pub id: ReplicaId,
    /// A live connection to this peer exists.
    pub connected: bool,
    /// QUIC's smoothed round trip on that connection; `None` without one.
    pub round_trip: Option<std::time::Duration>,
    /// Frames written to the peer completely.
    pub frames_sent: u64,
    /// Frames received from the peer (delivered or not).
    pub frames_received: u64,
    /// Outbound frames dropped because the peer's queue was full.
    pub frames_dropped: u64,
    /// Outbound frames taken from the queue whose write failed.
    pub send_failed: u64,
    /// Inbound frames refused for exceeding `frame_bytes_max`.
    pub frames_oversize: u64,
    /// Inbound frames dropped because the node's channel was full.
    pub inbound_dropped: u64,
    /// Frames currently queued for the peer.
    pub queued: usize,
}

/// A snapshot of the transport's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Indexed by `ReplicaId`.
    pub peers: Vec<PeerStats>,
    /// Handshakes that failed because a certificate was refused, by us or by
    /// the peer (unknown key, wrong pinned key, bad chain).
    pub rejected_handshakes: u64,
    /// Connections closed because they broke the lower-id-dials rule.
    pub tie_break_refused: u64,
}

/// Errors of the transport and the client endpoint.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The UDP socket could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// Building the certificate or the TLS/QUIC configuration failed.
    #[error("tls setup: {0}")]
    Tls(String),
    /// The configuration is inconsistent.
    #[error("invalid net config: {0}")]
    Config(String),
    /// The operation did not complete within its timeout.
    #[error("timed out")]
    Timeout,
    /// The peer could not be reached or the connection was lost.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The handshake failed because a certificate was refused (key pinning).
    #[error("handshake rejected: {0}")]
    Rejected(String),
    /// A frame exceeded the size cap.
    #[error("frame too large")]
    FrameTooLarge,
    /// The stream or endpoint was closed before the exchange completed
    /// (server busy, no response, shut down).
    #[error("closed: {0}")]
    Closed(String),
    /// There is no replica with this index.
    #[error("unknown replica {0}")]
    UnknownReplica(usize),
}

/// Application error codes used when closing connections and streams.
pub(crate) mod codes {
    use quinn::VarInt;
    pub const SHUTDOWN: VarInt = VarInt::from_u32(0);
    pub const REPLACED: VarInt = VarInt::from_u32(1);
    pub const TIE_BREAK: VarInt = VarInt::from_u32(2);
    pub const FRAME_TOO_LARGE: VarInt = VarInt::from_u32(3);
    pub const BUSY: VarInt = VarInt::from_u32(4);
    pub const NO_RESPONSE: VarInt = VarInt::from_u32(5);
    pub const TIMEOUT: VarInt = VarInt::from_u32(6);
    pub const UNKNOWN_KEY: VarInt = VarInt::from_u32(7);
}

/// Caps that are not worth configuring.
pub(crate) mod limits {
    /// Uni streams a replica peer may have open at once (one shared stream,
    /// the long frames in flight, and replaced streams not yet closed).
    pub const MESH_UNI_STREAMS: u32 = 64;
    /// Inbound streams read concurrently per connection (bounds memory to this
    /// many times `frame_bytes_max` per peer).
    pub const MESH_READERS: usize = 32;
    /// Long frames (each on a stream of its own) written concurrently per peer.
    pub const MESH_WRITERS: usize = 8;
    /// Handshakes in progress at once on one endpoint from addresses that
    /// are not a genesis peer's; more are refused.
    pub const HANDSHAKES: usize = 64;
    /// Of those, from one source IP address.
    pub const HANDSHAKES_PER_SOURCE: usize = 8;
    /// Handshakes in progress from one genesis peer's own address (kept
    /// apart: a peer always finds room, whatever others do).
    pub const PEER_HANDSHAKES: usize = 2;
    /// Data quinn buffers per connection before the reader consumes it.
    pub const RECEIVE_WINDOW: u32 = 32 * 1024 * 1024;
    /// Client connections a replica serves at once.
    pub const CLIENT_CONNECTIONS: usize = 1024;
    /// Sessions (bidirectional streams) one client connection may open (a
    /// client needs one).
    pub const CLIENT_STREAMS: u32 = 4;
    /// Requests in flight on one client session. Every answer waiting to be
    /// written holds one, so a client that sends without reading holds at
    /// most this many answers per session (a "busy" answer is ≈ 100 bytes:
    /// ≤ 100 MB for 1,024 such connections with 4 sessions each).
    pub const SESSION_IN_FLIGHT: usize = 256;
}

/// QUIC transport parameters for one endpoint.
pub(crate) fn transport_config(
    idle: Duration,
    keep_alive: Option<Duration>,
    uni: u32,
    bidi: u32,
) -> Result<Arc<quinn::TransportConfig>, NetError> {
    let mut t = quinn::TransportConfig::default();
    let idle = quinn::IdleTimeout::try_from(idle)
        .map_err(|e| NetError::Config(format!("idle timeout: {e}")))?;
    t.max_idle_timeout(Some(idle))
        .keep_alive_interval(keep_alive)
        .max_concurrent_uni_streams(uni.into())
        .max_concurrent_bidi_streams(bidi.into())
        .receive_window(limits::RECEIVE_WINDOW.into());
    Ok(Arc::new(t))
}

/// Maps a quinn connection error to a [`NetError`], noticing key rejections.
pub(crate) fn connection_error(e: &quinn::ConnectionError) -> NetError {
    if tls::is_handshake_rejection(e) {
        NetError::Rejected(e.to_string())
    } else {
        NetError::Unreachable(e.to_string())
    }
}
