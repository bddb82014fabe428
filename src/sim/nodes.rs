//! The node slots: the replicas (and the twin instance) as real [`Node`]s.
//! Inputs are ingested, a slot's writes are synced in one group at the end
//! of an instant, and what a node produced (messages, replies, commits)
//! leaves afterwards; a storage error or a panic takes the node down.

use super::diagram::{Fate, Origin};
use super::*;

impl Sim {
    /// The replica a node slot runs.
    pub(super) fn slot_id(&self, slot: usize) -> ReplicaId {
        if slot < self.scenario.replicas as usize {
            ReplicaId(slot as u32)
        } else {
            self.twin_of.expect("slot n exists only with a twin")
        }
    }

    pub(super) fn slot_endpoint(&self, slot: usize) -> Endpoint {
        if slot < self.scenario.replicas as usize {
            Endpoint::Replica(ReplicaId(slot as u32))
        } else {
            Endpoint::Twin
        }
    }

    pub(super) fn deliver_to_slot(&mut self, slot: usize, input: NodeInput) {
        let now = self.now;
        let r = self.slot_id(slot);
        if let NodeInput::Message { from, message } = &input {
            if self.strategies.contains_key(&r) && slot == r.index() {
                let (from, message) = (*from, message.clone());
                self.with_strategy(r, |strategy, ctx| strategy.incoming(ctx, from, &message));
            }
        }
        if self.step_slot(slot, |node| node.ingest(now, input)) && !self.flush_queued[slot] {
            self.flush_queued[slot] = true;
            self.push(now, Event::Flush(slot));
        }
    }

    /// The queued end of `slot`'s inputs at this instant.
    pub(super) fn flush_slot(&mut self, slot: usize) {
        self.flush_queued[slot] = false;
        let Some(node) = self.nodes[slot].as_ref() else {
            return;
        };
        if node.unsynced_writes() > 1 {
            self.grouped_syncs += 1;
        }
        // As in the runtime: what is already released leaves while the
        // group's write syncs, so a crash inside that write (armed in the
        // store) cannot take it back.
        let mut pending = None;
        if !self.step_slot(slot, |node| {
            pending = node.begin_flush()?;
            Ok(())
        }) {
            return;
        }
        self.after_node_step(slot);
        if self.step_slot(slot, |node| {
            if let Some(pending) = pending {
                node.write_pending(pending)?;
            }
            node.finish_flush();
            Ok(())
        }) {
            self.after_node_step(slot);
        }
    }

    /// Runs `f` on the node in `slot`; a storage error (a crash armed in a
    /// write, or a real failure) or a panic takes the node down. Returns
    /// whether the node is still up.
    pub(super) fn step_slot(
        &mut self,
        slot: usize,
        f: impl FnOnce(&mut Node<MemoryStore>) -> Result<(), crate::node::NodeError>,
    ) -> bool {
        let r = self.slot_id(slot);
        let wall = self.scenario.wall_ms(r, self.now);
        let node = self.nodes[slot].as_mut().expect("caller checked");
        // Each replica reads its own wall clock (offset, maybe stepped).
        node.set_wall_clock(wall);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(node)));
        match result {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                if slot == r.index() {
                    if let Some(applied) = self.stores[slot].crashed() {
                        self.died_in_write(r, applied, &e.to_string());
                        return false;
                    }
                }
                self.checker
                    .report(format!("{r:?} stopped on a node error: {e}"));
                self.nodes[slot] = None;
                false
            }
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                self.checker.report(format!("{r:?} panicked: {msg}"));
                self.nodes[slot] = None;
                false
            }
        }
    }

    pub(super) fn after_node_step(&mut self, slot: usize) {
        let n = self.scenario.replicas;
        let r = self.slot_id(slot);
        let me = self.slot_endpoint(slot);
        let honest = !self.checker.byzantine.contains(&r);
        let mut out = Vec::new();
        let mut committed = Vec::new();
        let executed;
        let views;
        {
            let node = self.nodes[slot].as_mut().expect("alive");
            executed = node.replica().last_executed().0;
            while let Some(o) = node.pop_outgoing() {
                out.push(o);
            }
            committed.extend(node.drain_committed());
            views = node.drain_views_entered();
            self.max_view = self.max_view.max(node.replica().view().0);
        }
        if self.drawing.is_some() {
            let heights: Vec<u64> = committed.iter().map(|b| b.height).collect();
            self.draw_node_step(slot, &views, &heights);
        }
        for block in &committed {
            self.log(|| {
                format!(
                    "{me:?} COMMIT height {} {:?} ({} txs)",
                    block.height,
                    block.block_hash,
                    block.txs.len()
                )
            });
            self.checker.on_commit(r, block);
        }
        if !committed.is_empty() {
            let node = self.nodes[slot].as_ref().expect("alive");
            let supply = node.bank().total_supply();
            self.checker.check_supply(r, supply, self.supply);
        }
        if honest {
            let node = self.nodes[slot].as_ref().expect("alive");
            let exceeded = node.footprint().exceeded(&node.footprint_limits());
            if !exceeded.is_empty() {
                self.checker.report(format!(
                    "S8 bounded: {r:?} exceeds its limits on {exceeded:?}"
                ));
            }
        }
        let strategy = self.strategies.contains_key(&r) && slot == r.index();
        for o in out {
            match o {
                Outgoing::ToReplica { to, message } => {
                    self.checker.on_send(r, &message, executed);
                    if strategy {
                        let original = self.drawing.is_some().then(|| message.clone());
                        let sends = self.with_strategy(r, |st, ctx| st.outgoing(ctx, to, message));
                        for s in sends {
                            self.strategy_send(r, s, original.as_ref());
                        }
                    } else {
                        self.send(me, Endpoint::Replica(to), message);
                    }
                }
                Outgoing::Broadcast(message) => {
                    self.checker.on_send(r, &message, executed);
                    for to in (0..n).map(ReplicaId).filter(|t| *t != r) {
                        if strategy {
                            let m = message.clone();
                            let sends = self.with_strategy(r, |st, ctx| st.outgoing(ctx, to, m));
                            for s in sends {
                                self.strategy_send(r, s, Some(&message));
                            }
                        } else {
                            self.send(me, Endpoint::Replica(to), message.clone());
                        }
                    }
                }
                Outgoing::ToClient { client, proof, .. } => {
                    let withheld = strategy
                        && self
                            .strategies
                            .get(&r)
                            .is_some_and(|s| !s.replies_to_clients());
                    if withheld {
                        continue;
                    }
                    if let Some(&c) = self.client_index.get(&client) {
                        self.send(me, Endpoint::Client(c), Message::Reply(proof));
                    }
                }
            }
        }
        if honest && slot == r.index() {
            // S8 counts what the transport holds for a peer that never
            // reads: bounded per peer, as `net::peer` bounds it.
            let exceeded: Vec<String> = self
                .outbound
                .iter()
                .filter(|((from, _), q)| {
                    *from == r
                        && (q.bytes > self.outbound_bytes_max
                            || q.frames.len() > self.outbound_frames_max)
                })
                .map(|((_, to), q)| {
                    format!(
                        "outbound queue for {to:?}: {} bytes in {} frames (bounds {} and {})",
                        q.bytes,
                        q.frames.len(),
                        self.outbound_bytes_max,
                        self.outbound_frames_max
                    )
                })
                .collect();
            if !exceeded.is_empty() {
                self.checker.report(format!(
                    "S8 bounded: {r:?} exceeds its limits on {exceeded:?}"
                ));
            }
        }
        // Schedule the node's next timer if it is earlier than the one pending.
        let deadline = self.nodes[slot].as_ref().and_then(|n| n.next_deadline());
        if let Some(d) = deadline {
            let d = d.max(self.now);
            if self.wake_at[slot].is_none_or(|w| d < w) {
                self.wake_at[slot] = Some(d);
                self.push(d, Event::Wake(slot));
            }
        }
    }

    /// A message reaches an endpoint: a client takes a reply; a replica
    /// ingests it — a client's request (its service may say "busy" or
    /// refuse it first), or a replica's message through the codec.
    pub(super) fn deliver(
        &mut self,
        from: Endpoint,
        to: Endpoint,
        message: Message,
        sent: Time,
        origin: Origin,
    ) {
        self.record(TraceEvent::Deliver {
            from,
            to,
            kind: message.kind(),
        });
        let slot = match to {
            Endpoint::Replica(r) => r.index(),
            Endpoint::Twin => self.scenario.replicas as usize,
            Endpoint::Client(c) => {
                self.draw_message(sent, from, to, Some(&message), Fate::Delivered, origin);
                if let Message::Reply(reply) = message {
                    self.on_reply(c, reply);
                }
                return;
            }
            Endpoint::ByzantineClient => {
                self.draw_message(sent, from, to, Some(&message), Fate::Delivered, origin);
                return;
            }
        };
        if self.nodes[slot].is_none() {
            self.draw_message(sent, from, to, Some(&message), Fate::ReceiverDown, origin);
            return;
        }
        // Only when drawing: the message as sent, for its arrow.
        let drawn = self.drawing.is_some().then(|| message.clone());
        self.log(|| format!("{from:?} -> {to:?} {}", describe(&message)));
        let input = match (self.endpoint_replica(from), message) {
            (None, Message::Request(tx)) => {
                let busy = self.nodes[slot].as_ref().is_some_and(|n| n.deferral(&tx));
                if let (Endpoint::Client(client), true, Some(replica)) =
                    (from, busy, self.endpoint_replica(to))
                {
                    let at = self.now.plus_millis(self.scenario.delay_min_ms);
                    let tx_id = tx.id();
                    self.push(
                        at,
                        Event::Busy {
                            client,
                            replica,
                            tx_id,
                        },
                    );
                }
                let refusal = self.nodes[slot].as_ref().and_then(|n| n.refusal(&tx));
                if let (Endpoint::Client(client), Some(receipt), Some(replica)) =
                    (from, refusal, self.endpoint_replica(to))
                {
                    let at = self.now.plus_millis(self.scenario.delay_min_ms);
                    let tx_id = tx.id();
                    self.push(
                        at,
                        Event::Refused {
                            client,
                            replica,
                            tx_id,
                            receipt,
                        },
                    );
                }
                NodeInput::Request(tx)
            }
            (Some(f), message) => {
                // As on the wire: encoded, under the frame cap the
                // runtime derives from genesis, decoded with its
                // checks (issue 24: honest messages used to pass as
                // values, so no seed could meet a message the codec
                // or the cap refuses).
                let frame = message.to_frame();
                let cap = self.frame_cap;
                match Message::from_frame(&frame, cap) {
                    Ok(message) => NodeInput::Message { from: f, message },
                    Err(e) => {
                        let fate = Fate::Refused(format!("codec: {e}"));
                        self.draw_message(sent, from, to, drawn.as_ref(), fate, origin);
                        if !self.strategies.contains_key(&f) {
                            self.checker.report(format!(
                                "S10 codec: an honest {} of {} bytes from {f:?} does not pass the codec (cap {cap}): {e}",
                                message.kind(),
                                frame.len()
                            ));
                        }
                        self.frames_refused += 1;
                        return;
                    }
                }
            }
            (None, _) => {
                self.draw_message(sent, from, to, drawn.as_ref(), Fate::Delivered, origin);
                return;
            }
        };
        if let NodeInput::Message { from: f, .. } = &input {
            self.observe_rtt(slot, *f, sent);
        }
        let before = self.refusals(slot);
        self.deliver_to_slot(slot, input);
        if let Some(m) = drawn {
            let fate = self.fate_after(slot, before);
            self.draw_message(sent, from, to, Some(&m), fate, origin);
        }
    }
}
