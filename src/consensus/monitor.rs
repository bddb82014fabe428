//! The proposal monitor: a backup replaces a primary that holds requests
//! back, long before the request timer would.
//!
//! The request timer (`requests.rs`) only catches a primary that makes no
//! progress for a whole timeout. A primary that proposes, but late — just
//! under the timeout each time — keeps its view while throughput collapses
//! (the `slow` adversary held it at 13 % of normal). Aardvark (Clement et
//! al., NSDI '09, §4.4) answered this with backups that demand a minimum
//! throughput of the primary; this monitor asks the same in latency terms,
//! which a backup can judge from what it sees alone:
//!
//! * **Room**: by the backup's own log the primary may propose — it has
//!   PRE-PREPAREs for fewer than `pipeline_depth` seqs above the backup's
//!   height, and the next seq is inside the window. Seqs that f+1 replicas
//!   voted on count as proposed even without their PRE-PREPARE; a seq
//!   voted on whose PRE-PREPARE we lack means we missed it, so we do not
//!   judge at all (the request timer and the fetch deal with that).
//! * **Stall**: a request waits unproposed (not in any PRE-PREPARE of this
//!   view) while the primary has room. The stall starts at the later of the
//!   request's arrival and the moment room opened.
//! * **Deadline** `D`: three smoothed rounds (a fresh PRE-PREPARE to its
//!   local commit, EWMA with gain 1/8), at least an eighth of the request
//!   timeout and at most twice it (when the request timer suspects a
//!   primary that talks). A round is two one-way delays or more
//!   (PREPAREs, then COMMITs), and so is the way of a request to the
//!   primary and of its PRE-PREPARE back to us: three rounds leave room
//!   for jitter. (A ceiling of half the timeout replaced honest primaries
//!   on links of up to 200 ms with a 300 ms timeout: 7 view changes in a
//!   seed that had none.)
//! * **Before any round was measured** the transport's round-trip times
//!   stand in for one: a round is at least one round trip to the replicas
//!   a quorum needs, so `D` is three times the round trip to the 2f-th
//!   nearest peer, within the same bounds ([`Replica::observe_link_rtt`];
//!   QUIC measures it from its ACKs, the simulator from its link delays).
//!   The 2f-th nearest, not the farthest: f Byzantine peers can slow their
//!   own links to stretch our patience, not those of the 2f correct peers
//!   a quorum can do with. The other way round, f Byzantine peers that
//!   are near can pull the choice down to the f-th nearest correct peer,
//!   so the first deadline lies between three round trips to the f-th and
//!   to the 2f-th nearest correct peer (and never below `T/8`); replacing
//!   a correct primary still takes f+1 suspicions, one of them correct.
//!   The primary's own link is not in it: a correct primary much farther
//!   away than the quorum can be suspected early — as with measured
//!   rounds, which do not contain its distance either (taking its round
//!   trip, capped at the request timeout, into the first deadline would
//!   close that; not done). Once rounds are measured, that round trip
//!   stays a lower bound on the smoothed round: a round cannot be shorter,
//!   and a sample that was (a PRE-PREPARE reordered behind its votes on a
//!   link of up to 200 ms) made an honest seed suspect its primary.
//!   With no round trip known either (a transport
//!   not yet connected), `D` is the request timeout. (A fixed guess of
//!   half the timeout was both too short on slow links — one false view
//!   change each in two honest seeds with 200 ms links and a 300 ms
//!   timeout — and too long on fast ones, where it let a Twins leader
//!   that the network cut off hold every view's first requests for half
//!   a timeout.)
//!   After `D/2` the backup forwards the waiting requests (up to
//!   [`FORWARD_MAX`] at a time, each once per view) to the primary, in case
//!   the primary lacks them; after `D` it suspects the primary, once per
//!   view. A view change still needs f+1 suspicions, so one impatient or
//!   Byzantine backup cannot depose a good primary.
//!
//! What it does not catch: a primary that proposes on time but only a few
//! requests per batch, or only some clients' requests while others wait
//! without room (a full pipeline is never blamed); a primary that stays
//! just under the deadline (three rounds, at least an eighth of the
//! request timeout: latency of a few rounds per request, not a collapse). The request timer still bounds those
//! by a timeout per request.

use std::collections::BTreeMap;

use super::timers::Timer;
use super::{Action, Config, Message, Replica, Status};
use crate::types::{ReplicaId, Seq, Time, View};

/// Requests a backup forwards to the primary at once.
pub(super) const FORWARD_MAX: usize = 16;

/// How many smoothed rounds a stall may last.
const ROUNDS_ALLOWED: u64 = 3;

/// What a backup knows of its primary's pace.
#[derive(Clone, Debug)]
pub(super) struct Monitor {
    /// Whether it judges at all (`Replica::watch_proposals`; on by
    /// default). Off, only the request timer replaces a primary and the
    /// first NEW-VIEW wait is the request timeout.
    pub(super) enabled: bool,
    /// Smoothed time from a fresh PRE-PREPARE to its local commit, in
    /// microseconds (`None` until one was measured).
    round_us: Option<u64>,
    /// Since when the primary has had room to propose, by our log.
    room_since: Option<Time>,
    /// The highest arrival number forwarded to the primary in this view.
    forwarded_upto: Option<u64>,
    /// The view whose primary this monitor suspected (once per view).
    suspected: Option<View>,
    /// The latest smoothed round trip to each peer the transport reported,
    /// in microseconds (at most one entry per replica of the cluster).
    link_rtt_us: BTreeMap<ReplicaId, u64>,
    /// The round trip to the 2f-th nearest peer (`None` until 2f peers
    /// reported one): the stand-in for a round before one was measured.
    quorum_rtt_us: Option<u64>,
}

impl Default for Monitor {
    fn default() -> Monitor {
        Monitor {
            enabled: true,
            round_us: None,
            room_since: None,
            forwarded_upto: None,
            suspected: None,
            link_rtt_us: BTreeMap::new(),
            quorum_rtt_us: None,
        }
    }
}

impl Monitor {
    /// A round measured: a fresh PRE-PREPARE accepted at `at` committed at
    /// `now`.
    pub(super) fn sample_round(&mut self, now: Time, at: Time) {
        let sample = now.0.saturating_sub(at.0);
        self.round_us = Some(match self.round_us {
            None => sample,
            Some(r) => r - r / 8 + sample / 8,
        });
    }

    /// How long the primary may leave a request unproposed while it has
    /// room, in milliseconds (the request timeout when the monitor is off).
    pub(super) fn deadline_ms(&self, cfg: &Config) -> u64 {
        if !self.enabled {
            return cfg.request_timeout_ms;
        }
        let floor = cfg.request_timeout_ms / 8;
        let ceiling = cfg.request_timeout_ms.saturating_mul(2);
        // A round takes at least a round trip to a quorum: a shorter
        // sample was a PRE-PREPARE that reached us after its votes.
        let round = match (self.round_us, self.quorum_rtt_us) {
            (Some(r), Some(q)) => Some(r.max(q)),
            (r, q) => r.or(q),
        };
        match round {
            None => cfg.request_timeout_ms,
            Some(r) => (ROUNDS_ALLOWED.saturating_mul(r) / 1000).clamp(floor, ceiling),
        }
    }

    /// A new view: its primary starts with a clean record.
    pub(super) fn enter_view(&mut self) {
        self.room_since = None;
        self.forwarded_upto = None;
        self.suspected = None;
    }
}

impl Replica {
    /// The transport measured the round trip to `peer`, `rtt_us`
    /// microseconds (smoothed, as QUIC keeps it; the core does no I/O and
    /// reads no clock, so the driver passes the figure). Before the first round is measured, the monitor's
    /// deadline and the first NEW-VIEW wait follow the round trip to the
    /// 2f-th nearest peer (see the module documentation). Reports about
    /// ourselves or replicas outside the cluster are ignored.
    pub fn observe_link_rtt(&mut self, peer: ReplicaId, rtt_us: u64) {
        if peer == self.me || !self.cluster.contains(peer) {
            return;
        }
        let m = &mut self.monitor;
        m.link_rtt_us.insert(peer, rtt_us);
        let cluster = &self.cluster;
        m.link_rtt_us.retain(|r, _| cluster.contains(*r));
        let needed = self.cluster.quorum() - 1;
        let mut known: Vec<u64> = m.link_rtt_us.values().copied().collect();
        m.quorum_rtt_us = (known.len() >= needed && needed > 0).then(|| {
            known.sort_unstable();
            known[needed - 1]
        });
    }

    /// The highest seq above our height the primary of this view proposed,
    /// by our log: a PRE-PREPARE, or f+1 voters (prepared or committing at
    /// a correct replica). `None` if some seq has votes but no PRE-PREPARE
    /// here: we missed one, and cannot tell how full the pipeline is.
    fn proposed_upto(&self) -> Option<Seq> {
        let weak = self.cluster.weak_quorum();
        let mut top = self.log.last_executed;
        for (seq, slot) in self.log.slots.range(self.log.last_executed.next()..) {
            if slot.view != self.view {
                continue;
            }
            let voted = slot.prepares.len().max(slot.commits.len()) >= weak;
            match (&slot.pre_prepare, voted) {
                (Some(_), _) => top = *seq,
                (None, true) => return None,
                (None, false) => {}
            }
        }
        Some(top)
    }

    /// Whether, by our log, the primary may propose now.
    fn primary_has_room(&self) -> bool {
        let Some(top) = self.proposed_upto() else {
            return false;
        };
        let next = top.next();
        next.0.saturating_sub(self.log.last_executed.0) <= self.cfg.pipeline_depth
            && next <= self.log.window_top()
    }

    /// Runs after every input: as a backup in normal operation, forwards
    /// requests the primary leaves waiting and suspects it once they wait
    /// past the deadline (see the module documentation).
    pub(super) fn watch_primary(&mut self) {
        let judging = self.monitor.enabled
            && self.status == Status::Normal
            && !self.is_primary()
            && self.monitor.suspected != Some(self.view)
            && self.view_change.suspects.get(&self.me) != Some(&self.view)
            && !self.behind_peers()
            && self.primary_has_room();
        if !judging {
            self.monitor.room_since = None;
            self.timers.stop(Timer::Proposal);
            return;
        }
        let now = self.now;
        let room_since = *self.monitor.room_since.get_or_insert(now);
        let Some(arrived) = self.requests.pending.oldest_unproposed_at() else {
            self.timers.stop(Timer::Proposal);
            return;
        };
        let since = arrived.max(room_since);
        let deadline = self.monitor.deadline_ms(&self.cfg);
        let waited = now.saturating_sub_millis(since);
        if waited >= deadline {
            self.monitor.suspected = Some(self.view);
            self.stats.primaries_suspected_stalling += 1;
            self.timers.stop(Timer::Proposal);
            tracing::info!(replica = %self.me, view = %self.view, primary = %self.primary(),
                waited_ms = waited, deadline_ms = deadline, pending = self.requests.pending.len(),
                "the primary left a request unproposed with room in its pipeline; suspecting it");
            self.suspect_primary();
            return;
        }
        if waited >= deadline / 2 {
            self.forward_waiting();
        }
        let next = if waited < deadline / 2 {
            deadline / 2
        } else {
            deadline
        };
        self.timers.set(Timer::Proposal, since.plus_millis(next));
    }

    /// Sends the primary the oldest requests it has not proposed, each once
    /// per view: it may not have them.
    fn forward_waiting(&mut self) {
        let waiting = self
            .requests
            .pending
            .unproposed_after(self.monitor.forwarded_upto, FORWARD_MAX);
        let to = self.primary();
        for (arrival, tx) in waiting {
            self.monitor.forwarded_upto = Some(arrival);
            self.stats.requests_forwarded += 1;
            self.actions.push_back(Action::Send {
                to,
                message: Message::Request(tx),
            });
        }
    }
}
