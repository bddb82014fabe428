//! The replica's timers: a closed set, one deadline each, fired in a fixed
//! order (after quinn-proto's `Timer` enum and `TimerTable`).
//!
//! The core reads no clock: every input carries `now`, and
//! [`TimerTable::next`] tells the driver when to send the next
//! [`super::Input::Tick`]. A deadline at or before `now` fires once and is
//! cleared before its handler runs; a handler that needs it again sets it.

use super::{Replica, Status};
use crate::types::Time;

/// Every timer of a replica. [`Timer::FIRING_ORDER`] is the order in which
/// timers due at one input fire: it is part of the core's behaviour (the
/// simulator's traces depend on it), so it changes only on purpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Timer {
    /// While changing views: re-send our VIEW-CHANGE (and, just after a
    /// restart in a view change, resume waiting for the NEW-VIEW).
    Retransmit,
    /// While catching up: the peer asked for batches did not answer in a
    /// retransmission interval, so ask the next one (runs exactly while a
    /// fetch is in progress).
    Fetch,
    /// While changing views with 2f+1 VIEW-CHANGEs in: the NEW-VIEW is late,
    /// so move to the next view (the timeout doubles with each attempt).
    ViewChange,
    /// While there is work (see `Replica::has_work`): it did not execute in
    /// a request timeout, so retransmit, fetch or suspect the primary.
    Request,
    /// Normal case with work: nothing executed for a while, so re-send our
    /// votes of the unexecuted seqs (the interval doubles while fruitless).
    VoteRetransmit,
    /// In normal operation with messages of a later view buffered: the
    /// NEW-VIEW asked of their senders did not come, so ask again.
    NewViewRequest,
    /// A backup in normal operation with a request the primary leaves
    /// unproposed while it has room: wakes the proposal monitor at half its
    /// deadline (forward the requests) and at the deadline (suspect). The
    /// monitor runs after every input (`Replica::watch_primary`), so the
    /// handler has nothing to do.
    Proposal,
}

impl Timer {
    pub(super) const FIRING_ORDER: [Timer; 7] = [
        Timer::Retransmit,
        Timer::Fetch,
        Timer::ViewChange,
        Timer::Request,
        Timer::VoteRetransmit,
        Timer::NewViewRequest,
        Timer::Proposal,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// One optional deadline per [`Timer`].
#[derive(Clone, Debug, Default)]
pub(super) struct TimerTable {
    deadlines: [Option<Time>; Timer::FIRING_ORDER.len()],
}

impl TimerTable {
    pub(super) fn get(&self, timer: Timer) -> Option<Time> {
        self.deadlines[timer.index()]
    }

    pub(super) fn is_set(&self, timer: Timer) -> bool {
        self.get(timer).is_some()
    }

    pub(super) fn set(&mut self, timer: Timer, at: Time) {
        self.deadlines[timer.index()] = Some(at);
    }

    pub(super) fn stop(&mut self, timer: Timer) {
        self.deadlines[timer.index()] = None;
    }

    /// Whether `timer` is due at `now`; if so it is cleared (it fires once).
    pub(super) fn expire(&mut self, timer: Timer, now: Time) -> bool {
        let due = self.get(timer).is_some_and(|t| t <= now);
        if due {
            self.stop(timer);
        }
        due
    }

    /// The earliest deadline of all.
    pub(super) fn next(&self) -> Option<Time> {
        self.deadlines.iter().flatten().min().copied()
    }
}

impl Replica {
    /// Fires the timers due at `now`, in [`Timer::FIRING_ORDER`], then
    /// (re)arms the request timer and the vote retransmission while there
    /// is work.
    pub(super) fn on_timers(&mut self) {
        let now = self.now;
        for timer in Timer::FIRING_ORDER {
            if self.timers.expire(timer, now) {
                match timer {
                    Timer::Retransmit => self.on_retransmit_timer(),
                    Timer::Fetch => self.on_fetch_timer(),
                    Timer::ViewChange => self.on_view_change_timer(),
                    Timer::Request => self.on_request_timer(),
                    Timer::VoteRetransmit => self.on_vote_retransmit_timer(),
                    Timer::NewViewRequest => self.on_new_view_request_timer(),
                    Timer::Proposal => {}
                }
            }
        }
        if !self.timers.is_set(Timer::Request) && self.status == Status::Normal && self.has_work() {
            self.start_request_timer();
        }
        if !self.has_work() {
            self.timers.stop(Timer::VoteRetransmit);
        } else if !self.timers.is_set(Timer::VoteRetransmit) && self.status == Status::Normal {
            let interval = self.vote_retransmit.interval_ms(&self.cfg);
            self.vote_retransmit.mark = self.log.last_executed;
            self.timers
                .set(Timer::VoteRetransmit, now.plus_millis(interval));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_due_timer_fires_once_and_the_next_deadline_is_the_earliest() {
        let mut t = TimerTable::default();
        assert_eq!(t.next(), None);
        t.set(Timer::Request, Time::from_millis(30));
        t.set(Timer::Retransmit, Time::from_millis(10));
        assert_eq!(t.next(), Some(Time::from_millis(10)));
        assert!(!t.expire(Timer::Request, Time::from_millis(29)));
        assert!(t.expire(Timer::Request, Time::from_millis(30)));
        assert!(
            !t.expire(Timer::Request, Time::from_millis(31)),
            "fired once"
        );
        assert!(!t.is_set(Timer::Request));
        assert!(t.is_set(Timer::Retransmit));
        t.stop(Timer::Retransmit);
        assert_eq!(t.next(), None);
    }

    #[test]
    fn the_firing_order_names_every_timer_once() {
        let mut seen = [false; Timer::FIRING_ORDER.len()];
        for t in Timer::FIRING_ORDER {
            assert!(!seen[t.index()]);
            seen[t.index()] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }
}
