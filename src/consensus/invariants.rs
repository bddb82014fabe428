//! `Replica::check_invariants`: what must hold between the replica's parts
//! after every input, whatever peers sent (after TigerBeetle's habit of
//! `ignore_*` guards followed by unconditional assertions).
//!
//! Peer input never breaks these: a guard refuses it first. A failure is a
//! bug in this replica, so it panics with the rule that broke. The checks
//! run after every input in debug builds and unit tests, and in the
//! simulator ([`Replica::check_invariants_always`]); release replicas skip
//! them (they walk the log).

use super::timers::Timer;
use super::{teeth, Replica, Status};

impl Replica {
    /// Makes the replica check its invariants after every input, in release
    /// builds too (the simulator does).
    pub fn check_invariants_always(&mut self) {
        self.invariant_checks = true;
    }

    /// Panics, naming the rule, if the replica's state is inconsistent.
    pub fn check_invariants(&self) {
        if teeth::core_broken() {
            // A broken core breaks these on purpose; the campaigns must
            // catch it through its peers and clients, as they would a bug.
            return;
        }
        let me = self.me;
        if let Status::ViewChange { to } = self.status {
            assert!(
                to > self.view,
                "replica {me}: changing to view {to}, not above view {}",
                self.view
            );
        }
        assert_eq!(
            self.timers.is_set(Timer::Fetch),
            self.catch_up.fetch.is_some(),
            "replica {me}: the fetch timer runs exactly while a fetch is in progress"
        );
        if self.timers.is_set(Timer::ViewChange) {
            assert!(
                self.status != Status::Normal,
                "replica {me}: NEW-VIEW timer outside a view change"
            );
        }
        self.view_change.check_invariants(me);
        self.log.check_invariants(me, self.view);
    }
}
