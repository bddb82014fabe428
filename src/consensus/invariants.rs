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
use super::Replica;

impl Replica {
    /// Makes the replica check its invariants after every input, in release
    /// builds too (the simulator does).
    pub fn check_invariants_always(&mut self) {
        self.invariant_checks = true;
    }

    /// Panics, naming the rule, if the replica's state is inconsistent.
    pub fn check_invariants(&self) {
        #[cfg(feature = "teeth")]
        if crate::teeth::any_active() {
            // A broken core breaks these on purpose; the campaigns must
            // catch it through its peers and clients, as they would a bug.
            return;
        }
        let me = self.me;
        if let Some(to) = self.changing_to {
            assert!(
                to > self.view,
                "replica {me}: changing to view {to}, not above view {}",
                self.view
            );
        }
        assert_eq!(
            self.timers.is_set(Timer::Fetch),
            self.fetch.is_some(),
            "replica {me}: the fetch timer runs exactly while a fetch is in progress"
        );
        if self.timers.is_set(Timer::ViewChange) {
            assert!(
                self.changing_to.is_some(),
                "replica {me}: NEW-VIEW timer outside a view change"
            );
        }
        for (sender, vc) in &self.view_changes {
            assert_eq!(
                vc.signer(),
                *sender,
                "replica {me}: VIEW-CHANGE filed under another sender"
            );
        }
        if let Some((&first, _)) = self.slots.first_key_value() {
            assert!(
                first > self.low,
                "replica {me}: slot {first} at or below the stable checkpoint {}",
                self.low
            );
        }
        for (&seq, slot) in &self.slots {
            assert!(
                slot.view <= self.view,
                "replica {me}: slot {seq} holds view {} above ours",
                slot.view
            );
            assert_eq!(
                slot.pre_prepare.is_some(),
                slot.batch.is_some(),
                "replica {me}: slot {seq} holds a PRE-PREPARE without its batch or a batch without it"
            );
            if let Some(pp) = &slot.pre_prepare {
                assert!(
                    pp.view == slot.view && pp.seq == seq,
                    "replica {me}: slot {seq} holds a PRE-PREPARE for another view or seq"
                );
                if let Some(c) = &slot.committed {
                    assert_eq!(c.digest, pp.digest, "replica {me}: seq {seq} committed one batch and holds a PRE-PREPARE for another");
                }
            }
            for (signer, p) in &slot.prepares {
                assert!(
                    p.view == slot.view && p.seq == seq && p.signer() == *signer,
                    "replica {me}: slot {seq} holds a PREPARE for another view, seq or signer"
                );
            }
            for (signer, c) in &slot.commits {
                assert!(
                    c.view == slot.view && c.seq == seq && c.signer() == *signer,
                    "replica {me}: slot {seq} holds a COMMIT for another view, seq or signer"
                );
            }
            if let Some((view, _)) = &slot.prepared {
                assert!(
                    *view <= self.view,
                    "replica {me}: seq {seq} prepared in view {view}, above ours"
                );
            }
        }
    }
}
