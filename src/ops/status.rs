//! What the replica's loop publishes for the operations endpoint: one
//! [`Status`] per publication, plain data copied out of the node, the
//! transport and the client service, so that nothing the HTTP server does
//! can touch the consensus state or hold it up.

use serde::Serialize;
use std::collections::BTreeMap;

/// One replica's state as its loop last published it. Every field is this
/// replica's word alone: a Byzantine replica may publish anything, so a
/// program that acts on it asks f+1 replicas (README, "Operating a network").
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Status {
    pub replica: u32,
    /// Replicas in the network (n = 3f + 1).
    pub replicas: u32,
    /// Hex of the network id (the genesis digest).
    pub network: String,
    pub view: u64,
    /// `Some(v)` while a view change to `v` is in progress.
    pub changing_to: Option<u64>,
    /// Milliseconds since the view change in progress started.
    pub view_change_ms: Option<u64>,
    pub primary: u32,
    /// Executed height and the hash of its block (hex).
    pub height: u64,
    pub block_hash: String,
    /// The last executed seq (null requests of view changes included, so
    /// it may be above the height).
    pub last_executed: u64,
    pub stable_checkpoint: u64,
    pub low_watermark: u64,
    pub high_watermark: u64,
    /// `Some(seq)` while fetching committed blocks up to `seq` from peers.
    pub catching_up_to: Option<u64>,
    pub pending_requests: u64,
    pub client_requests_in_flight: u64,
    pub peers: Vec<Peer>,
    pub connected_peers: u32,
    pub counters: Counters,
    /// View changes this replica started, by why (`counters` has the total).
    pub view_changes_by_reason: BTreeMap<String, u64>,
    /// Peer and client input the core refused, by reason.
    pub refused: BTreeMap<String, u64>,
    /// Messages received from peers, by kind.
    pub received: BTreeMap<String, u64>,
    /// Signature checks, by what was checked.
    pub signature_checks: BTreeMap<String, u64>,
    /// Milliseconds since the process started.
    pub uptime_ms: u64,
    /// Wall-clock milliseconds since the Unix epoch of this publication.
    pub published_at_ms: u64,
}

/// A peer replica as the transport sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Peer {
    pub replica: u32,
    pub connected: bool,
    /// QUIC's smoothed round trip to it in microseconds; `None` while not
    /// connected.
    pub rtt_us: Option<u64>,
    pub frames_sent: u64,
    pub frames_received: u64,
    pub frames_dropped: u64,
}

/// Totals since the process started (Prometheus counters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    pub committed_transactions: u64,
    pub committed_blocks: u64,
    pub view_changes_started: u64,
    pub new_views_entered: u64,
    pub fetches_sent: u64,
    pub fetches_served: u64,
    pub fetches_throttled: u64,
    pub blocks_fetched: u64,
    pub client_requests_busy: u64,
    pub undecodable_frames: u64,
    pub synced_writes: u64,
    /// Times this backup's proposal monitor suspected a primary that left
    /// requests unproposed with room in its pipeline.
    pub primaries_suspected_stalling: u64,
    /// Requests it forwarded to such a primary.
    pub requests_forwarded: u64,
}

/// Why a replica is not ready to serve (the body of a 503 from `/readyz`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotReady {
    /// Fewer than 2f peers connected: a quorum may not be reachable.
    FewPeers { connected: u32, needed: u32 },
    /// In a view change for longer than the bound.
    StuckInViewChange { to: u64, ms: u64 },
    /// Fetching blocks it missed.
    CatchingUp { to: u64, height: u64 },
}

impl std::fmt::Display for NotReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotReady::FewPeers { connected, needed } => write!(
                f,
                "connected to {connected} peers, needs at least {needed} (2f)"
            ),
            NotReady::StuckInViewChange { to, ms } => {
                write!(f, "in a view change to view {to} for {ms} ms")
            }
            NotReady::CatchingUp { to, height } => {
                write!(
                    f,
                    "catching up: at height {height}, fetching up to seq {to}"
                )
            }
        }
    }
}

impl Status {
    /// f, the number of faulty replicas the network tolerates.
    pub fn f(&self) -> u32 {
        self.replicas.saturating_sub(1) / 3
    }

    /// Whether this replica can take part in ordering now: at least 2f
    /// peers connected (with itself a quorum of 2f+1 is reachable), not in
    /// a view change for more than `view_change_bound_ms`, not catching up.
    pub fn readiness(&self, view_change_bound_ms: u64) -> Result<(), NotReady> {
        let needed = 2 * self.f();
        if self.connected_peers < needed {
            return Err(NotReady::FewPeers {
                connected: self.connected_peers,
                needed,
            });
        }
        if let (Some(to), Some(ms)) = (self.changing_to, self.view_change_ms) {
            if ms > view_change_bound_ms {
                return Err(NotReady::StuckInViewChange { to, ms });
            }
        }
        if let Some(to) = self.catching_up_to {
            return Err(NotReady::CatchingUp {
                to,
                height: self.height,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready() -> Status {
        Status {
            replicas: 4,
            connected_peers: 2,
            ..Status::default()
        }
    }

    #[test]
    fn readiness_needs_2f_peers_no_long_view_change_and_no_catch_up() {
        assert_eq!(ready().readiness(1_000), Ok(()));
        let few = Status {
            connected_peers: 1,
            ..ready()
        };
        assert_eq!(
            few.readiness(1_000),
            Err(NotReady::FewPeers {
                connected: 1,
                needed: 2
            })
        );
        let changing = Status {
            changing_to: Some(3),
            view_change_ms: Some(900),
            ..ready()
        };
        assert_eq!(changing.readiness(1_000), Ok(()), "a short view change");
        let stuck = Status {
            view_change_ms: Some(1_001),
            ..changing
        };
        assert_eq!(
            stuck.readiness(1_000),
            Err(NotReady::StuckInViewChange { to: 3, ms: 1_001 })
        );
        let behind = Status {
            catching_up_to: Some(40),
            height: 7,
            ..ready()
        };
        let e = behind.readiness(1_000).unwrap_err();
        assert_eq!(
            e.to_string(),
            "catching up: at height 7, fetching up to seq 40"
        );
        let seven = Status {
            replicas: 7,
            connected_peers: 3,
            ..Status::default()
        };
        assert!(
            matches!(
                seven.readiness(1_000),
                Err(NotReady::FewPeers { needed: 4, .. })
            ),
            "n = 7: f = 2, 2f = 4 peers"
        );
    }
}
