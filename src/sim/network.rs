//! The simulated network: endpoints, links (loss, duplication, delay),
//! partitions, the Twins routing, and the bounded outbound queues a
//! replica keeps for a peer that never reads (as `net::peer` bounds them).
//! Every random choice comes from the network's RNG (`net_rng`), so the order of
//! sends fixes what arrives when.

use super::diagram::{self, Fate};
use super::*;

/// Where a simulated message goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Endpoint {
    Replica(ReplicaId),
    /// The second instance of the twinned replica.
    Twin,
    Client(usize),
    ByzantineClient,
}

/// The frames a replica holds for a peer that never reads them, as the
/// transport's per-peer outbound queue (`net::peer`) would.
#[derive(Default)]
pub(super) struct OutQueue {
    pub(super) frames: std::collections::VecDeque<usize>,
    pub(super) bytes: usize,
}

impl Sim {
    pub(super) fn partitioned(&self, now: Time, a: ReplicaId, b: ReplicaId) -> bool {
        if !self.faults_active {
            return false;
        }
        self.scenario.partitions.iter().any(|p| {
            p.start <= now && now < p.end && (p.isolated.contains(&a) != p.isolated.contains(&b))
        })
    }

    /// The replica an endpoint speaks for.
    pub(super) fn endpoint_replica(&self, e: Endpoint) -> Option<ReplicaId> {
        match e {
            Endpoint::Replica(r) => Some(r),
            Endpoint::Twin => self.twin_of,
            _ => None,
        }
    }

    /// Twins: where a message between replicas really goes in the current
    /// round (`None`: the network drops it). Honest replicas of the round's
    /// second group talk to the twin's second instance, the others to the
    /// first; only the round's leader's proposals get through.
    pub(super) fn twin_route(
        &self,
        from: Endpoint,
        to: Endpoint,
        message: &Message,
    ) -> Option<Endpoint> {
        let Some(t) = self.twin_of else {
            return Some(to);
        };
        let now = self.now;
        let round = self
            .scenario
            .twin_rounds
            .iter()
            .find(|r| r.start <= now && now < r.end);
        if let Some(round) = round {
            let proposal = matches!(message, Message::PrePrepare { .. } | Message::NewView(_));
            if proposal && self.endpoint_replica(from) != Some(round.leader) {
                return None;
            }
        }
        let second = |r: ReplicaId| round.is_some_and(|rd| rd.second.contains(&r));
        match (from, to) {
            (Endpoint::Replica(a), Endpoint::Replica(b)) if b == t && a != t => {
                Some(if second(a) { Endpoint::Twin } else { to })
            }
            (Endpoint::Replica(a), Endpoint::Replica(b)) if a == t => (!second(b)).then_some(to),
            (Endpoint::Twin, Endpoint::Replica(b)) => second(b).then_some(to),
            _ => Some(to),
        }
    }

    /// Replica `r`'s process (re)started: its transport connects to every
    /// peer, and the handshakes give its first round trips.
    pub(super) fn start_probes(&mut self, r: ReplicaId) {
        for p in 0..self.scenario.replicas {
            if p != r.0 {
                self.schedule_probe(r.index(), ReplicaId(p), 0);
            }
        }
    }

    /// The next round trip replica slot `slot`'s transport makes to `peer`
    /// outside the protocol's traffic, `after_ms` from now: the handshake
    /// (0), then a keep-alive ping every `keep_alive_ms` (the transport's
    /// `NetConfig::keep_alive`), as QUIC keeps
    /// an idle connection alive. A peer whose replica sends nothing (the
    /// `silent` adversary) still answers them: its transport runs.
    fn schedule_probe(&mut self, slot: usize, peer: ReplicaId, after_ms: u64) {
        let (_, _, lo, hi) = self.link();
        let mut rtt_us = 0;
        for _ in 0..2 {
            rtt_us += self.net_rng.gen_range(lo * 1000..=hi * 1000);
        }
        let generation = self.probe_generation[slot];
        let at = Time(self.now.plus_millis(after_ms).0 + rtt_us);
        self.push(
            at,
            Event::Probe {
                slot,
                peer,
                generation,
                rtt_us,
            },
        );
    }

    /// A probe's round trip completed: it counts if both processes are up
    /// and no partition cuts them; the next follows while this life lasts.
    pub(super) fn on_probe(&mut self, slot: usize, peer: ReplicaId, generation: u64, rtt_us: u64) {
        if generation != self.probe_generation[slot] || self.nodes[slot].is_none() {
            return;
        }
        let me = ReplicaId(slot as u32);
        if self.nodes[peer.index()].is_some() && !self.partitioned(self.now, me, peer) {
            self.smooth_rtt(slot, peer, rtt_us);
        }
        self.schedule_probe(slot, peer, self.keep_alive_ms);
    }

    /// A frame from `peer` sent at `sent` reached node slot `slot` now:
    /// what its transport learns of the round trip, as QUIC smooths it
    /// (RFC 9002 §5.3: gain 1/8, the first sample taken whole). The sample
    /// is twice this one-way delay (the links are symmetric in law). A
    /// peer's own hold-back (the `slow` and `omission` adversaries' extra
    /// delay) counts too, which QUIC, timing its ACKs, would not see unless
    /// the peer also held its packets: such a peer looks farther than it
    /// is, and the monitor's 2f-th nearest rule leaves up to f of them out.
    pub(super) fn observe_rtt(&mut self, slot: usize, peer: ReplicaId, sent: Time) {
        let sample = self.now.0.saturating_sub(sent.0).saturating_mul(2);
        self.smooth_rtt(slot, peer, sample);
    }

    /// One round-trip sample of `slot`'s link to `peer`, smoothed into what
    /// its transport reports to the node.
    fn smooth_rtt(&mut self, slot: usize, peer: ReplicaId, sample: u64) {
        let srtt = *self
            .link_rtt_us
            .entry((slot, peer))
            .and_modify(|s| *s = *s - *s / 8 + sample / 8)
            .or_insert(sample);
        if let Some(node) = self.nodes[slot].as_mut() {
            node.observe_link_rtt(peer, std::time::Duration::from_micros(srtt));
        }
    }

    /// Puts a message on the simulated network.
    pub(super) fn send(&mut self, from: Endpoint, to: Endpoint, message: Message) {
        self.send_delayed(from, to, message, 0)
    }

    /// Loss and delay of the network as it is now: (loss, duplicate, min, max).
    pub(super) fn link(&self) -> (f64, f64, u64, u64) {
        if self.faults_active {
            (
                self.scenario.loss,
                self.scenario.duplicate,
                self.scenario.delay_min_ms,
                self.scenario.delay_max_ms,
            )
        } else {
            (0.0, 0.0, 1, 5)
        }
    }

    /// Raw frame bytes from a Byzantine replica, over the same network.
    pub(super) fn send_frame(
        &mut self,
        from: ReplicaId,
        to: ReplicaId,
        bytes: Vec<u8>,
        extra_ms: u64,
    ) {
        let (a, b) = (Endpoint::Replica(from), Endpoint::Replica(to));
        let forged = diagram::Origin::Forged;
        if self.partitioned(self.now, from, to) {
            self.draw_message(self.now, a, b, None, Fate::Dropped("partition"), forged);
            return;
        }
        let (loss, _, lo, hi) = self.link();
        if loss > 0.0 && self.net_rng.gen_bool(loss) {
            self.draw_message(self.now, a, b, None, Fate::Dropped("loss"), forged);
            return;
        }
        let delay_us = self.net_rng.gen_range(lo * 1000..=hi * 1000) + extra_ms * 1000;
        let at = Time(self.now.0 + delay_us);
        let sent = self.now;
        self.push(
            at,
            Event::DeliverFrame {
                from,
                to,
                bytes,
                sent,
            },
        );
    }

    /// Puts a message on the simulated network after `extra_ms` more.
    pub(super) fn send_delayed(
        &mut self,
        from: Endpoint,
        to: Endpoint,
        message: Message,
        extra_ms: u64,
    ) {
        let origin = self.sending_origin();
        let drop = |sim: &mut Sim, to: Endpoint, message: &Message, why: &'static str| {
            sim.draw_message(sim.now, from, to, Some(message), Fate::Dropped(why), origin);
        };
        let Some(to) = self.twin_route(from, to, &message) else {
            drop(self, to, &message, "Twins routing");
            return;
        };
        if let (Some(a), Endpoint::Replica(b)) = (self.endpoint_replica(from), to) {
            if self.never_reads.contains(&b) {
                self.queue_unread(a, b, &message);
                drop(self, to, &message, "receiver never reads (outbound queue)");
                return;
            }
        }
        if let (Some(a), Some(b)) = (self.endpoint_replica(from), self.endpoint_replica(to)) {
            if self.partitioned(self.now, a, b) {
                drop(self, to, &message, "partition");
                return;
            }
        }
        let (loss, dup, lo, hi) = self.link();
        if loss > 0.0 && self.net_rng.gen_bool(loss) {
            drop(self, to, &message, "loss");
            return;
        }
        let copies = if dup > 0.0 && self.net_rng.gen_bool(dup) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay_us = self.net_rng.gen_range(lo * 1000..=hi * 1000) + extra_ms * 1000;
            let at = Time(self.now.0 + delay_us);
            self.push(
                at,
                Event::Deliver {
                    from,
                    to,
                    message: message.clone(),
                    sent: self.now,
                    origin,
                },
            );
        }
    }

    /// Frames replica `from` sends a peer that never reads stay in its
    /// outbound queue for that peer, bounded as the transport bounds it
    /// (`net::Transport::send`: over `peer_queue_max` frames or
    /// `net::peer_bytes_max` bytes, the oldest are dropped).
    pub(super) fn queue_unread(&mut self, from: ReplicaId, to: ReplicaId, message: &Message) {
        let len = message.to_frame().len();
        self.record(TraceEvent::QueuedUnread { from, to, len });
        let (frames_max, bytes_max) = (self.outbound_frames_max, self.outbound_bytes_max);
        let q = self.outbound.entry((from, to)).or_default();
        q.bytes += len;
        q.frames.push_back(len);
        while q.frames.len() > frames_max || (q.bytes > bytes_max && q.frames.len() > 1) {
            if let Some(old) = q.frames.pop_front() {
                q.bytes -= old;
            }
            self.outbound_dropped += 1;
        }
        self.outbound_peak_bytes = self.outbound_peak_bytes.max(q.bytes);
    }

    /// Sends a request to every replica (and the twin instance), or to the
    /// replicas `only` selects.
    pub(super) fn send_request(
        &mut self,
        from: Endpoint,
        tx: &Transaction,
        only: Option<&dyn Fn(u32) -> bool>,
    ) {
        for r in 0..self.scenario.replicas {
            if only.is_some_and(|f| !f(r)) {
                continue;
            }
            self.send(
                from,
                Endpoint::Replica(ReplicaId(r)),
                Message::Request(tx.clone()),
            );
            if self.twin_of == Some(ReplicaId(r)) {
                self.send(from, Endpoint::Twin, Message::Request(tx.clone()));
            }
        }
    }
}
