//! What a replica's client endpoint may hold: its bounds
//! ([`ClientLimits`]) and the slots and shares every connection draws on.

use super::server::Screen;
use crate::crypto::PublicKey;
use crate::net::limits;
use crate::net::share::{Shares, Unit};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bounds of a replica's client endpoint.
#[derive(Clone, Debug)]
pub struct ClientLimits {
    /// Largest request frame.
    pub frame_bytes_max: usize,
    /// Requests in flight at the replica (queued for the node or awaiting
    /// its answer, or answered and not yet written); beyond it, "busy".
    pub queue_max: usize,
    /// Of `queue_max`, what one client key may hold (so a client that never
    /// reads its answers cannot take every slot).
    pub key_share: usize,
    /// Of `queue_max`, what one source IP address may hold, whatever keys
    /// it presents.
    pub source_share: usize,
    /// An answer not written within this (the client does not read) ends
    /// its session and frees the session's slots.
    pub write_timeout: Duration,
    /// Client connections one source IP may hold, handshakes included.
    pub connections_per_source: usize,
    /// A connection that sends no request record for this long is closed
    /// (keep-alives do not count).
    pub idle_timeout: Duration,
}

impl ClientLimits {
    /// The bounds a replica uses for a replica-wide `queue_max`: a quarter
    /// of it per key, half per source address.
    pub fn for_queue(frame_bytes_max: usize, queue_max: usize) -> ClientLimits {
        ClientLimits {
            frame_bytes_max,
            queue_max,
            key_share: (queue_max / 4).max(1),
            source_share: (queue_max / 2).max(1),
            write_timeout: Duration::from_secs(10),
            connections_per_source: limits::CLIENT_CONNECTIONS / 4,
            idle_timeout: Duration::from_secs(120),
        }
    }
}

/// What every connection of one endpoint shares.
pub(super) struct Shared {
    /// The replica-wide request slots (`limits.queue_max`).
    pub(super) in_flight: Arc<Semaphore>,
    /// Slots and connections held per client key and per source address.
    pub(super) shares: Shares<ShareOf>,
    pub(super) screen: Screen,
    pub(super) limits: ClientLimits,
}

/// Who a share of the endpoint's capacity is counted against.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub(super) enum ShareOf {
    /// Request slots of one client key.
    Key(PublicKey),
    /// Request slots of one source IP address.
    Source(IpAddr),
    /// Connections (and handshakes) of one source IP address.
    Connections(IpAddr),
}

impl Shared {
    /// A replica-wide request slot within the client's shares.
    pub(super) fn request_slot(&self, key: PublicKey, source: IpAddr) -> Option<ServerSlot> {
        let shares = self.shares.take([
            (ShareOf::Key(key), self.limits.key_share),
            (ShareOf::Source(source), self.limits.source_share),
        ])?;
        let slot = self.in_flight.clone().try_acquire_owned().ok()?;
        Some(ServerSlot {
            _slot: slot,
            _shares: shares,
        })
    }
}

/// A replica-wide request slot and the client's share units for it.
pub(super) struct ServerSlot {
    _slot: OwnedSemaphorePermit,
    _shares: [Unit<ShareOf>; 2],
}
