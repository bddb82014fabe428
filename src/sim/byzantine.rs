//! The adversaries: Byzantine replicas' strategies (run with a context
//! built from their node) and the Byzantine client (bad signatures,
//! replays, conflicting and reordered nonces, floods, edge-case signatures).

use super::*;

/// Frames a flooding adversary sends each replica per tick here: each costs
/// a real signature check, so campaigns keep it small (a real process
/// floods far harder: tests/byzantine_flood.rs).
pub(super) const SIM_FLOOD_PER_TICK: usize = 8;

/// A client under adversary control: funded, with a real key.
pub(super) struct ByzantineClient {
    pub(super) key: KeyPair,
    pub(super) nonce: u64,
    /// Its own transactions, for replays.
    pub(super) sent: Vec<Transaction>,
}

impl Sim {
    /// Runs `f` with replica `r`'s strategy and a context built from its
    /// node (the strategy is taken out for the call).
    pub(super) fn with_strategy<T: Default>(
        &mut self,
        r: ReplicaId,
        f: impl FnOnce(&mut Box<dyn Strategy>, &mut adversary::Ctx) -> T,
    ) -> T {
        let Some(mut strategy) = self.strategies.remove(&r) else {
            return T::default();
        };
        let (view, height) = self.nodes[r.index()]
            .as_ref()
            .map_or((crate::types::View(0), 0), |n| {
                (n.replica().view(), n.height())
            });
        let colluders: Vec<ReplicaId> =
            self.byzantine.iter().copied().filter(|b| *b != r).collect();
        let mut ctx = adversary::Ctx {
            me: r,
            key: &self.keys[r.index()],
            network: self.genesis.network,
            cluster: self.genesis.cluster,
            view,
            height: Seq(height),
            now: self.now,
            request_timeout_ms: self.scenario.request_timeout_ms,
            colluders: &colluders,
            flood_per_tick: SIM_FLOOD_PER_TICK,
            rng: &mut self.adv_rng,
            collusion: &mut self.collusion,
        };
        let out = f(&mut strategy, &mut ctx);
        self.strategies.insert(r, strategy);
        out
    }

    /// A Byzantine strategy's send of (what it made of) its core's
    /// `original`: passed on unchanged, rewritten, or forged (no original).
    pub(super) fn strategy_send(
        &mut self,
        r: ReplicaId,
        s: adversary::Send,
        original: Option<&Message>,
    ) {
        use super::diagram::Origin;
        if self.drawing.is_none() {
            return self.adversary_send(r, s);
        }
        let origin = match (&s.wire, original) {
            (Wire::Message(m), Some(o)) if m == o => Origin::Passed,
            (_, Some(_)) => Origin::Rewritten,
            (_, None) => Origin::Forged,
        };
        self.with_origin(origin, |sim| sim.adversary_send(r, s));
    }

    pub(super) fn adversary_send(&mut self, r: ReplicaId, s: adversary::Send) {
        match s.wire {
            Wire::Message(m) => {
                self.send_delayed(Endpoint::Replica(r), Endpoint::Replica(s.to), m, s.delay_ms)
            }
            Wire::Frame(bytes) => self.send_frame(r, s.to, bytes, s.delay_ms),
        }
    }

    /// A Byzantine client: bad signatures, replayed nonces, conflicting
    /// transactions for one nonce, reordered nonces, floods, signatures at
    /// the edges of the transaction rule (`crypto::txsig`: torsioned ones,
    /// valid; small-order R, non-canonical s or a small-order key, invalid),
    /// sent to some replicas only so the others meet them in a PRE-PREPARE
    /// (the batch check) — all with a real funded key (its valid
    /// transactions count as submitted).
    pub(super) fn byzantine_client_tick(&mut self) {
        let Some(mut b) = self.byzantine_client.take() else {
            return;
        };
        let network = self.genesis.network;
        let me = Endpoint::ByzantineClient;
        let victims: Vec<PublicKey> = self.client_index.keys().copied().collect();
        let to = victims[self.client_rng.gen_range(0..victims.len())];
        let action = self.client_rng.gen_range(0..8);
        self.record(TraceEvent::ByzantineClientAct {
            action,
            nonce: b.nonce,
        });
        let valid = |b: &mut ByzantineClient, nonce: u64, amount: u64| {
            let tx = Transaction::transfer(network, &b.key, to, amount, nonce);
            b.sent.push(tx.clone());
            tx
        };
        match action {
            0 => {
                b.nonce += 1;
                let mut tx = Transaction::transfer(network, &b.key, to, 5, b.nonce);
                tx.signature[7] ^= 0x40;
                self.send_request(me, &tx, None);
            }
            1 => {
                if !b.sent.is_empty() {
                    let old = b.sent[self.client_rng.gen_range(0..b.sent.len())].clone();
                    self.send_request(me, &old, None);
                }
            }
            2 => {
                b.nonce += 1;
                let nonce = b.nonce;
                let first = valid(&mut b, nonce, 3);
                let second = valid(&mut b, nonce, 4);
                self.checker.submitted.insert(first.id());
                self.checker.submitted.insert(second.id());
                self.send_request(me, &first, Some(&|r| r % 2 == 0));
                self.send_request(me, &second, Some(&|r| r % 2 == 1));
            }
            3 => {
                let (n1, n2) = (b.nonce + 1, b.nonce + 2);
                b.nonce += 2;
                let later = valid(&mut b, n2, 1);
                let earlier = valid(&mut b, n1, 1);
                self.checker.submitted.insert(later.id());
                self.checker.submitted.insert(earlier.id());
                self.send_request(me, &later, None);
                self.send_request(me, &earlier, None);
            }
            5 => {
                // Valid under the rule, refused by verify_strict: every
                // replica must accept it, whichever check meets it.
                b.nonce += 1;
                let mut tx = Transaction::transfer(network, &b.key, to, 2, b.nonce);
                let t = self.client_rng.gen_range(1..8);
                tx.signature =
                    crate::crypto::txsig::sign_torsioned(&b.key, &tx.signing_digest(network), t);
                b.sent.push(tx.clone());
                self.checker.submitted.insert(tx.id());
                self.send_request(me, &tx, Some(&|r| r % 2 == 0));
            }
            6 => {
                // Invalid under the rule; never submitted, so S4 flags it if
                // any block holds it.
                b.nonce += 1;
                let mut tx = Transaction::transfer(network, &b.key, to, 6, b.nonce);
                let identity = curve25519_dalek::constants::EIGHT_TORSION[0].compress();
                match self.client_rng.gen_range(0..3) {
                    0 => tx.signature[..32].copy_from_slice(identity.as_bytes()),
                    1 => tx.signature = crate::crypto::txsig::with_non_canonical_s(&tx.signature),
                    _ => {
                        tx.from = PublicKey(identity.to_bytes());
                    }
                }
                self.send_request(me, &tx, Some(&|r| r % 2 == 1));
            }
            _ => {
                for _ in 0..40 {
                    b.nonce += 1;
                    let nonce = b.nonce;
                    let tx = valid(&mut b, nonce, 1);
                    self.checker.submitted.insert(tx.id());
                    self.send_request(me, &tx, None);
                }
            }
        }
        if b.sent.len() > 256 {
            b.sent.drain(..128);
        }
        self.byzantine_client = Some(b);
        self.push(self.now.plus_millis(100), Event::ByzantineClientTick);
    }

    /// Raw bytes from a Byzantine replica arrive: decoded (or refused).
    pub(super) fn deliver_frame(
        &mut self,
        from: ReplicaId,
        to: ReplicaId,
        bytes: Vec<u8>,
        sent: Time,
    ) {
        use super::diagram::{Fate, Origin};
        self.record(TraceEvent::Frame {
            from,
            to,
            bytes: &bytes,
        });
        let (a, b) = (Endpoint::Replica(from), Endpoint::Replica(to));
        if self.nodes[to.index()].is_none() {
            self.draw_message(sent, a, b, None, Fate::ReceiverDown, Origin::Forged);
            return;
        }
        match Message::from_frame(&bytes, crate::codec::FRAME_BYTES_MAX) {
            Ok(message) => {
                self.log(|| format!("{from:?} -> {to:?} frame {}", describe(&message)));
                let drawn = self.drawing.is_some().then(|| message.clone());
                let before = self.refusals(to.index());
                self.observe_rtt(to.index(), from, sent);
                self.deliver_to_slot(to.index(), NodeInput::Message { from, message });
                if let Some(m) = drawn {
                    let fate = self.fate_after(to.index(), before);
                    self.draw_message(sent, a, b, Some(&m), fate, Origin::Forged);
                }
            }
            Err(e) => {
                self.log(|| format!("{from:?} -> {to:?} frame refused: {e}"));
                let fate = Fate::Refused(format!("codec: {e}"));
                self.draw_message(sent, a, b, None, fate, Origin::Forged);
                self.frames_refused += 1;
            }
        }
    }

    /// A Byzantine replica's strategy ticks (if its node is up), and ticks
    /// again `adversary::TICK_MS` later.
    pub(super) fn adversary_tick(&mut self, r: ReplicaId) {
        self.record(TraceEvent::AdversaryTick { replica: r });
        if self.nodes[r.index()].is_some() {
            let sends = self.with_strategy(r, |strategy, ctx| strategy.tick(ctx));
            for s in sends {
                self.strategy_send(r, s, None);
            }
        }
        self.push(
            self.now.plus_millis(adversary::TICK_MS),
            Event::AdversaryTick(r),
        );
    }
}
