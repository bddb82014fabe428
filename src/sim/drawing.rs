//! Filling the space-time diagram ([`diagram`]) as a run goes, when asked
//! (`SimOptions::diagram`). Every hook here only reads the simulator's
//! state and writes to the recorder: no RNG draw, no event, nothing hashed;
//! with no recorder each hook is one `None` check.

use super::diagram::{Diagram, Fate, Fields, Item, Origin};
use super::*;

/// The recorder: the diagram so far and what it needs to notice changes.
pub(super) struct Recorder {
    pub(super) diagram: Diagram,
    /// Each node slot's low watermark last seen (a rise is a stable checkpoint).
    low: Vec<u64>,
    /// Violations the checker had at the last look.
    violations_seen: usize,
    /// The origin of what is being sent now (set around a Byzantine
    /// strategy's sends).
    pub(super) origin: Origin,
}

impl Recorder {
    pub(super) fn new(scenario: &Scenario, twin_of: Option<ReplicaId>, slots: usize) -> Recorder {
        let n = scenario.replicas as usize;
        let mut lanes: Vec<String> = (0..n).map(|r| format!("R{r}")).collect();
        if let Some(t) = twin_of {
            lanes.push(format!("R{}'", t.0));
        }
        lanes.push("clients".into());
        let mut items: Vec<Item> = scenario
            .partitions
            .iter()
            .map(|p| Item::Partition {
                start_us: p.start.0,
                end_us: p.end.0,
                lanes: p.isolated.iter().map(|r| r.index()).collect(),
            })
            .collect();
        items.extend(scenario.twin_rounds.iter().map(|round| {
            Item::TwinRound {
                start_us: round.start.0,
                end_us: round.end.0,
                // The second group and the second instance (lane n).
                lanes: round
                    .second
                    .iter()
                    .map(|r| r.index())
                    .chain(twin_of.map(|_| n))
                    .collect(),
                leader: round.leader.0,
            }
        }));
        Recorder {
            diagram: Diagram {
                lanes,
                items,
                end_us: 0,
                title: String::new(),
            },
            low: vec![0; slots],
            violations_seen: 0,
            origin: Origin::Honest,
        }
    }

    fn lane(&self, e: Endpoint) -> usize {
        match e {
            Endpoint::Replica(r) => r.index(),
            // The twin's lane comes right after the replicas'.
            Endpoint::Twin => self.diagram.lanes.len() - 2,
            Endpoint::Client(_) | Endpoint::ByzantineClient => self.diagram.lanes.len() - 1,
        }
    }
}

impl Sim {
    /// A message (or a frame's message) left `from` at `sent` and met
    /// `fate` now.
    pub(super) fn draw_message(
        &mut self,
        sent: Time,
        from: Endpoint,
        to: Endpoint,
        message: Option<&Message>,
        fate: Fate,
        origin: Origin,
    ) {
        let now = self.now;
        let Some(rec) = self.drawing.as_mut() else {
            return;
        };
        let origin = if from == Endpoint::ByzantineClient {
            Origin::Forged
        } else {
            origin
        };
        let item = Item::Message {
            sent_us: sent.0,
            at_us: now.0,
            from: rec.lane(from),
            to: rec.lane(to),
            kind: message.map_or("frame", |m| m.kind()),
            fields: message.map(Fields::of).unwrap_or_default(),
            fate,
            origin,
        };
        rec.diagram.items.push(item);
    }

    /// The origin a message being sent now gets.
    pub(super) fn sending_origin(&self) -> Origin {
        self.drawing.as_ref().map_or(Origin::Honest, |r| r.origin)
    }

    /// Runs `f` (a Byzantine strategy's send) with `origin` as the origin
    /// of what it sends.
    pub(super) fn with_origin(&mut self, origin: Origin, f: impl FnOnce(&mut Sim)) {
        if let Some(rec) = self.drawing.as_mut() {
            rec.origin = origin;
        }
        f(self);
        if let Some(rec) = self.drawing.as_mut() {
            rec.origin = Origin::Honest;
        }
    }

    /// The refusal counts of the node in `slot` (only when drawing).
    pub(super) fn refusals(&self, slot: usize) -> Option<BTreeMap<&'static str, u64>> {
        self.drawing.as_ref()?;
        let node = self.nodes[slot].as_ref()?;
        Some(
            node.replica()
                .stats()
                .ignored
                .iter()
                .map(|(r, n)| (r.text(), *n))
                .collect(),
        )
    }

    /// The fate of a message given to `slot`: refused if one of its
    /// refusal counts rose meanwhile.
    pub(super) fn fate_after(
        &self,
        slot: usize,
        before: Option<BTreeMap<&'static str, u64>>,
    ) -> Fate {
        let (Some(before), Some(after)) = (before, self.refusals(slot)) else {
            return Fate::Delivered;
        };
        after
            .iter()
            .find(|(r, n)| before.get(*r).is_none_or(|b| b < n))
            .map_or(Fate::Delivered, |(r, _)| Fate::Refused((*r).to_string()))
    }

    pub(super) fn draw_item(&mut self, item: impl FnOnce(Time) -> Item) {
        let now = self.now;
        if let Some(rec) = self.drawing.as_mut() {
            rec.diagram.items.push(item(now));
        }
    }

    /// After a node step: views entered, stable checkpoints and commits.
    pub(super) fn draw_node_step(
        &mut self,
        slot: usize,
        views: &[crate::types::View],
        heights: &[u64],
    ) {
        let now = self.now.0;
        let low = self.nodes[slot]
            .as_ref()
            .map(|n| n.replica().low_watermark().0);
        let Some(rec) = self.drawing.as_mut() else {
            return;
        };
        for v in views {
            rec.diagram.items.push(Item::View {
                at_us: now,
                lane: slot,
                view: v.0,
            });
        }
        if let Some(low) = low {
            if low > rec.low[slot] {
                rec.diagram.items.push(Item::Checkpoint {
                    at_us: now,
                    lane: slot,
                    seq: low,
                });
            }
            rec.low[slot] = low;
        }
        for h in heights {
            rec.diagram.items.push(Item::Commit {
                at_us: now,
                lane: slot,
                height: *h,
            });
        }
    }

    /// Violations the checker found since the last look, placed now.
    pub(super) fn draw_violations(&mut self) {
        let now = self.now.0;
        let Some(rec) = self.drawing.as_mut() else {
            return;
        };
        let all = &self.checker.violations;
        for v in &all[rec.violations_seen.min(all.len())..] {
            rec.diagram.items.push(Item::Violation {
                at_us: now,
                text: v.clone(),
            });
        }
        rec.violations_seen = all.len();
    }
}
