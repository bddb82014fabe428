//! A real Byzantine replica (cargo feature `byzantine`): the honest node
//! runs unchanged, and what it sends passes through an adversary
//! [`Strategy`] before it reaches the transport.
//!
//! The runtime calls into an [`Adversary`] at three points only:
//!
//! * every message the node wants to send (`Outgoing::ToReplica`, and a
//!   `Broadcast` as one call per other replica) goes to
//!   [`Strategy::outgoing`], and what it returns is sent instead — a
//!   [`Wire::Frame`] as raw bytes on the peer connection, a `delay_ms > 0`
//!   from a spawned task that sleeps first (the event loop never waits);
//! * every decoded message from a peer is shown to [`Strategy::incoming`]
//!   before the node handles it;
//! * every [`TICK_MS`] the runtime calls [`Strategy::tick`] and sends what it
//!   injects.
//!
//! Replies to clients pass only while [`Strategy::replies_to_clients`].

use crate::adversary::{self, Collusion, Ctx, Kind, Send, Strategy, Wire, TICK_MS};
use crate::cluster::Cluster;
use crate::consensus::messages::Message;
use crate::crypto::{KeyPair, NetworkId};
use crate::net::Transport;
use crate::types::{ReplicaId, Seq, Time, View};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Delayed sends in flight at once; more are dropped (and counted), so a
/// strategy that delays everything cannot pile up unbounded tasks.
const DELAYED_MAX: usize = 4096;

/// Frames a flooding strategy sends each peer per tick (20,000 a second):
/// more than the peer's inbound queue share takes, so the receiver's
/// bounds, not the attacker's restraint, decide what it handles.
const FLOOD_PER_TICK: usize = 1_000;

/// Catalogue names under the names `pbft-replica start --byzantine` also
/// accepts for them.
const ALIASES: &[(&str, Kind)] = &[
    ("forge-signatures", Kind::Forge),
    ("flood", Kind::FarFlood),
    ("stale-replay", Kind::Replay),
];

/// Every name `--byzantine` accepts: the aliases, then each catalogue
/// entry that is a replica strategy.
pub fn behaviour_names() -> Vec<&'static str> {
    ALIASES
        .iter()
        .map(|(n, _)| *n)
        .chain(
            adversary::CATALOGUE
                .iter()
                .filter(|(_, k, _)| k.strategy().is_some())
                .map(|(n, _, _)| *n),
        )
        .collect()
}

/// The adversary kind `name` selects, or a one-line error listing the
/// valid names.
pub fn behaviour(name: &str) -> Result<Kind, String> {
    let kind = ALIASES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, k)| *k)
        .or_else(|| adversary::by_name(name).filter(|k| k.strategy().is_some()));
    kind.ok_or_else(|| {
        format!(
            "unknown Byzantine behaviour '{name}'; valid: {}",
            behaviour_names().join(", ")
        )
    })
}

/// Counters of what the adversary did (logged at shutdown).
#[derive(Clone, Copy, Debug, Default)]
pub struct AdversaryStats {
    /// Messages the honest node wanted to send (per recipient).
    pub honest: u64,
    /// Transmissions actually made (messages and raw frames).
    pub sent: u64,
    /// Of those, raw frames.
    pub raw_frames: u64,
    /// Of those, sent after a delay.
    pub delayed: u64,
    /// Transmissions injected by `tick`.
    pub injected: u64,
    /// Delayed sends dropped because `DELAYED_MAX` were in flight.
    pub delayed_dropped: u64,
}

/// A strategy with everything its [`Ctx`] borrows.
pub struct Adversary {
    kind: Kind,
    strategy: Box<dyn Strategy>,
    me: ReplicaId,
    key: KeyPair,
    network: NetworkId,
    cluster: Cluster,
    request_timeout_ms: u64,
    rng: ChaCha8Rng,
    collusion: Collusion,
    next_tick: Instant,
    delayed_in_flight: Arc<AtomicUsize>,
    stats: AdversaryStats,
}

/// Where the honest core stands, as the strategy's [`Ctx`] reports it.
#[derive(Clone, Copy, Debug)]
pub struct CoreState {
    pub view: View,
    pub height: u64,
    pub now: Time,
}

impl Adversary {
    /// The adversary `kind` for replica `me`; `None` if `kind` is not a
    /// replica strategy. The RNG is seeded from the OS (the seed is
    /// returned for the log).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        kind: Kind,
        me: ReplicaId,
        key: KeyPair,
        network: NetworkId,
        cluster: Cluster,
        request_timeout_ms: u64,
    ) -> Option<(Adversary, u64)> {
        let strategy = kind.strategy()?;
        let seed: u64 = rand::rngs::OsRng.gen();
        Some((
            Adversary {
                kind,
                strategy,
                me,
                key,
                network,
                cluster,
                request_timeout_ms,
                rng: ChaCha8Rng::seed_from_u64(seed),
                collusion: Collusion::default(),
                next_tick: Instant::now() + Duration::from_millis(TICK_MS),
                delayed_in_flight: Arc::new(AtomicUsize::new(0)),
                stats: AdversaryStats::default(),
            },
            seed,
        ))
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn stats(&self) -> AdversaryStats {
        self.stats
    }

    pub fn replies_to_clients(&self) -> bool {
        self.strategy.replies_to_clients()
    }

    /// Runs `f` with the strategy and a fresh context.
    fn with<R>(&mut self, core: CoreState, f: impl FnOnce(&mut dyn Strategy, &mut Ctx) -> R) -> R {
        let Adversary {
            strategy,
            me,
            key,
            network,
            cluster,
            request_timeout_ms,
            rng,
            collusion,
            ..
        } = self;
        let mut ctx = Ctx {
            me: *me,
            key,
            network: *network,
            cluster: *cluster,
            view: core.view,
            height: Seq(core.height),
            now: core.now,
            request_timeout_ms: *request_timeout_ms,
            colluders: &[],
            flood_per_tick: FLOOD_PER_TICK,
            rng,
            collusion,
        };
        f(strategy.as_mut(), &mut ctx)
    }

    /// The node wants `message` sent to `to`: sends what the strategy makes
    /// of it.
    pub fn outgoing(
        &mut self,
        transport: &Transport,
        core: CoreState,
        to: ReplicaId,
        message: Message,
    ) {
        self.stats.honest += 1;
        let sends = self.with(core, |s, ctx| s.outgoing(ctx, to, message));
        self.transmit(transport, sends);
    }

    /// The node wants `message` sent to every other replica.
    pub fn broadcast(&mut self, transport: &Transport, core: CoreState, message: &Message) {
        let (cluster, me) = (self.cluster, self.me);
        for to in cluster.replicas().filter(|r| *r != me) {
            self.outgoing(transport, core, to, message.clone());
        }
    }

    /// The answer to a client's query: what the strategy makes of the
    /// honest one.
    pub fn answer_query(
        &mut self,
        core: CoreState,
        query: &crate::client::proto::ClientRequest,
        honest: crate::client::proto::ClientResponse,
    ) -> crate::client::proto::ClientResponse {
        self.with(core, |s, ctx| s.answer_query(ctx, query, honest))
    }

    /// A decoded message from `from`, before the node handles it.
    pub fn incoming(&mut self, core: CoreState, from: ReplicaId, message: &Message) {
        self.with(core, |s, ctx| s.incoming(ctx, from, message));
    }

    /// When the next [`Strategy::tick`] is due.
    pub fn next_tick(&self) -> Instant {
        self.next_tick
    }

    /// Calls [`Strategy::tick`] if it is due and sends what it injects;
    /// returns whether it was due.
    pub fn tick_if_due(&mut self, transport: &Transport, core: CoreState) -> bool {
        let now = Instant::now();
        if now < self.next_tick {
            return false;
        }
        let period = Duration::from_millis(TICK_MS);
        self.next_tick += period;
        if self.next_tick <= now {
            // Fell behind (a long handler): skip the missed ticks.
            self.next_tick = now + period;
        }
        let sends = self.with(core, |s, ctx| s.tick(ctx));
        self.stats.injected += sends.len() as u64;
        self.transmit(transport, sends);
        true
    }

    fn transmit(&mut self, transport: &Transport, sends: Vec<Send>) {
        for Send { to, wire, delay_ms } in sends {
            let frame: Arc<[u8]> = match wire {
                Wire::Message(m) => Arc::from(m.to_frame()),
                Wire::Frame(bytes) => {
                    self.stats.raw_frames += 1;
                    Arc::from(bytes)
                }
            };
            if delay_ms == 0 {
                self.stats.sent += 1;
                transport.send(to, frame);
                continue;
            }
            if self.delayed_in_flight.load(Relaxed) >= DELAYED_MAX {
                self.stats.delayed_dropped += 1;
                continue;
            }
            self.stats.sent += 1;
            self.stats.delayed += 1;
            self.delayed_in_flight.fetch_add(1, Relaxed);
            let in_flight = self.delayed_in_flight.clone();
            let transport = transport.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                transport.send(to, frame);
                in_flight.fetch_sub(1, Relaxed);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaviour_names_resolve() {
        assert_eq!(behaviour("equivocate"), Ok(Kind::Equivocate));
        assert_eq!(behaviour("silent"), Ok(Kind::Silent));
        assert_eq!(behaviour("forge-signatures"), Ok(Kind::Forge));
        assert_eq!(behaviour("flood"), Ok(Kind::FarFlood));
        assert_eq!(behaviour("stale-replay"), Ok(Kind::Replay));
        assert_eq!(behaviour("far-flood"), Ok(Kind::FarFlood));
        for name in behaviour_names() {
            assert!(behaviour(name).is_ok(), "{name}");
        }
        let err = behaviour("twins").unwrap_err();
        assert!(err.contains("unknown Byzantine behaviour 'twins'"), "{err}");
        assert!(err.contains("equivocate") && err.contains("stale-replay"));
        assert!(!err.contains('\n'));
        assert!(behaviour("clients").is_err());
        assert!(behaviour("").is_err());
    }
}
