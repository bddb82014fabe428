//! Teeth: deliberately broken variants of the core, which take effect only
//! with the cargo feature `teeth`, to prove the simulator's campaigns find
//! real bugs.
//!
//! Each [`Tooth`] is one known-wrong shortcut (a quorum one too small, a
//! signature not checked, a vote not persisted, ...). The code it breaks
//! calls a named hook below, in one line, at the one place it breaks: the
//! consensus core through `consensus::teeth`, `node::store`, `ledger::bank`
//! and `crypto` directly. Without the feature every hook is an inlined
//! honest value, so default builds take no broken branch; with it a hook
//! takes its broken branch only while its tooth is [`active`], and with no
//! tooth active a `teeth` build behaves exactly like a default one.
//! `tests/teeth.rs` turns each tooth on in turn and runs the adversary
//! campaign that must catch it.
//!
//! The active tooth is process-wide (the simulator's campaign threads all
//! see it), so only one test at a time may set it.

use std::sync::atomic::{AtomicU8, Ordering};

/// A deliberately broken variant of the core.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Tooth {
    QuorumTwoF = 1,
    SignersNotDeduplicated,
    RestartVotesInCrashView,
    OSetNotChecked,
    CommitSignatureNotChecked,
    NoCapOnFutureBuffering,
    CheckpointFromF,
    CheckpointFromFPlusOne,
    NonceNotChecked,
    EquivocationGuardOff,
    ViewChangeProofNotChecked,
    ExecuteNotAtomic,
    AbstainNotPersisted,
    TimerResetOnAnyExecution,
    LostStoreVotesAfresh,
    ProposeAtStaleSeq,
}

/// Name, tooth and one-line description of every tooth.
pub const CATALOGUE: &[(&str, Tooth, &str)] = &[
    ("quorum-2f", Tooth::QuorumTwoF, "prepared, committed and NEW-VIEW need 2f matching messages instead of 2f+1"),
    ("signers-not-deduplicated", Tooth::SignersNotDeduplicated, "prepared certificates in VIEW-CHANGEs and commit certificates of fetched batches count signatures, not distinct signers"),
    ("restart-votes-in-crash-view", Tooth::RestartVotesInCrashView, "a replica restarted after a crash sends new PRE-PREPAREs and PREPAREs in the view it crashed in, though it no longer knows which ones it sent there"),
    ("o-set-not-checked", Tooth::OSetNotChecked, "a backup takes the null requests a NEW-VIEW re-proposes on trust instead of comparing them with the O-set it recomputes"),
    ("commit-signature-not-checked", Tooth::CommitSignatureNotChecked, "COMMITs, as votes and in fetched commit certificates, are decoded without checking their signatures"),
    ("no-cap-on-future-buffering", Tooth::NoCapOnFutureBuffering, "messages for future views are buffered without evicting the sender's oldest beyond its share"),
    ("checkpoint-from-f", Tooth::CheckpointFromF, "a checkpoint becomes stable with f matching CHECKPOINTs instead of 2f+1"),
    ("checkpoint-from-f-plus-1", Tooth::CheckpointFromFPlusOne, "a checkpoint becomes stable with f+1 matching CHECKPOINTs instead of 2f+1"),
    ("nonce-not-checked", Tooth::NonceNotChecked, "the bank applies a transfer whatever its nonce (no strictly increasing client nonces)"),
    ("equivocation-guard-off", Tooth::EquivocationGuardOff, "a backup replaces an accepted PRE-PREPARE with a conflicting one for the same view and seq, and prepares it too"),
    ("view-change-proof-not-checked", Tooth::ViewChangeProofNotChecked, "the checkpoint and prepared certificates inside a VIEW-CHANGE are not checked"),
    ("execute-not-atomic", Tooth::ExecuteNotAtomic, "executing a block writes the state changes and the block with its chain tip in two synced writes instead of one"),
    ("timer-reset-on-any-execution", Tooth::TimerResetOnAnyExecution, "any executed batch restarts the request timer and clears its strikes, not only the execution of the request it waits for"),
    ("lost-store-votes-afresh", Tooth::LostStoreVotesAfresh, "a replica restarted on a wiped or restored store votes (and asks for view changes) as if it had never voted, though its view record shows it did"),
    ("propose-at-stale-seq", Tooth::ProposeAtStaleSeq, "a primary that caught up by fetching proposes at its old next seq, at or below the seqs it executed, instead of above them"),
    ("abstain-not-persisted", Tooth::AbstainNotPersisted, "the rule to sit out the view a crash erased the votes of lasts only for the run that learned it: a clean stop and restart lift it"),
];

impl Tooth {
    pub fn name(self) -> &'static str {
        entry(self).0
    }
    pub fn description(self) -> &'static str {
        entry(self).2
    }
}

fn entry(t: Tooth) -> &'static (&'static str, Tooth, &'static str) {
    CATALOGUE
        .iter()
        .find(|(_, tooth, _)| *tooth == t)
        .expect("every tooth is in the catalogue")
}

/// The tooth called `name`, if any.
pub fn by_name(name: &str) -> Option<Tooth> {
    CATALOGUE
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, t, _)| *t)
}

/// 0: no tooth; otherwise the active tooth's discriminant.
static ACTIVE: AtomicU8 = AtomicU8::new(0);

/// Makes `tooth` the active one, process-wide (`None`: the honest core).
pub fn set(tooth: Option<Tooth>) {
    ACTIVE.store(tooth.map_or(0, |t| t as u8), Ordering::SeqCst);
}

/// Whether `tooth` is the active one.
pub fn active(tooth: Tooth) -> bool {
    ACTIVE.load(Ordering::Relaxed) == tooth as u8
}

/// Whether any tooth is active.
pub fn any_active() -> bool {
    ACTIVE.load(Ordering::Relaxed) != 0
}

// ---- consensus hooks ----
//
// One function per shortcut of the core (`src/consensus`), called at the
// one place it breaks, through `consensus::teeth`: that module stands in
// constant no-ops for these in builds without the feature (this file is
// not compiled then), and adds the hooks that need the core's own types.

/// Whether the core may break its own invariants: any tooth is active
/// (`Replica::check_invariants` then stands aside, and the campaigns must
/// catch the tooth through its peers and clients, as they would a bug).
pub fn core_broken() -> bool {
    any_active()
}

/// `quorum` (2f+1), or 2f while [`Tooth::QuorumTwoF`] is active: for
/// prepared, committed and NEW-VIEW.
pub fn quorum(quorum: usize) -> usize {
    if active(Tooth::QuorumTwoF) {
        quorum - 1
    } else {
        quorum
    }
}

/// The matching CHECKPOINTs that make a checkpoint stable: `quorum`
/// (2f+1), or `f` while [`Tooth::CheckpointFromF`] is active, or
/// `weak_quorum` (f+1) while [`Tooth::CheckpointFromFPlusOne`] is.
pub fn checkpoint_quorum(quorum: usize, f: usize, weak_quorum: usize) -> usize {
    if active(Tooth::CheckpointFromF) {
        f
    } else if active(Tooth::CheckpointFromFPlusOne) {
        weak_quorum
    } else {
        quorum
    }
}

/// Whether a list of signed votes may name a signer twice
/// ([`Tooth::SignersNotDeduplicated`]).
pub fn signers_not_deduplicated() -> bool {
    active(Tooth::SignersNotDeduplicated)
}

/// The signers a certificate counts: its `distinct` signers, or all its
/// `listed` votes while [`Tooth::SignersNotDeduplicated`] is active.
pub fn signers_counted(distinct: usize, listed: usize) -> usize {
    if active(Tooth::SignersNotDeduplicated) {
        listed
    } else {
        distinct
    }
}

/// Whether COMMITs are taken without a signature check
/// ([`Tooth::CommitSignatureNotChecked`]).
pub fn commit_signature_not_checked() -> bool {
    active(Tooth::CommitSignatureNotChecked)
}

/// Whether future-view messages are buffered without eviction
/// ([`Tooth::NoCapOnFutureBuffering`]).
pub fn no_cap_on_future_buffering() -> bool {
    active(Tooth::NoCapOnFutureBuffering)
}

/// Whether a conflicting PRE-PREPARE replaces an accepted one
/// ([`Tooth::EquivocationGuardOff`]).
pub fn equivocation_guard_off() -> bool {
    active(Tooth::EquivocationGuardOff)
}

/// Whether a VIEW-CHANGE's certificates go unchecked
/// ([`Tooth::ViewChangeProofNotChecked`]).
pub fn view_change_proof_not_checked() -> bool {
    active(Tooth::ViewChangeProofNotChecked)
}

/// Whether a NEW-VIEW's null re-proposals are taken on trust
/// ([`Tooth::OSetNotChecked`]).
pub fn o_set_not_checked() -> bool {
    active(Tooth::OSetNotChecked)
}

/// Whether executed batches that lack the request the timer waits for are
/// no progress for it: `censored`, or never while
/// [`Tooth::TimerResetOnAnyExecution`] is active.
pub fn censored(censored: bool) -> bool {
    censored && !active(Tooth::TimerResetOnAnyExecution)
}

/// Whether a replica on a lost store votes afresh
/// ([`Tooth::LostStoreVotesAfresh`]).
pub fn lost_store_votes_afresh() -> bool {
    active(Tooth::LostStoreVotesAfresh)
}

/// Whether a replica restarted after a crash votes in the crash's view
/// ([`Tooth::RestartVotesInCrashView`]).
pub fn restart_votes_in_crash_view() -> bool {
    active(Tooth::RestartVotesInCrashView)
}

/// Whether the rule to sit out a crash's view lasts only one run
/// ([`Tooth::AbstainNotPersisted`]).
pub fn abstain_not_persisted() -> bool {
    active(Tooth::AbstainNotPersisted)
}

/// The seq a primary proposes at: above both its `next` seq and the
/// last it `executed`, or `next` alone while [`Tooth::ProposeAtStaleSeq`]
/// is active.
pub fn proposal_seq<S: Ord>(next: S, above_executed: S) -> S {
    if active(Tooth::ProposeAtStaleSeq) {
        next
    } else {
        next.max(above_executed)
    }
}

// ---- node, ledger and crypto hooks ----
//
// The teeth outside the consensus core, each a named hook its one call site
// in `node::store`, `ledger::bank` or `crypto` calls in every build. With the
// feature `teeth` a hook takes its broken branch only while its tooth is
// active; without it, it is an inlined no-op (`false`, `Ok(())`), so the
// broken branch compiles to nothing. Hooks name no type of a higher layer:
// this module is L0.

/// Tooth `execute-not-atomic` (`node::store`, executing a block): while it
/// is active, takes the writes `is_state` picks out of `writes` (the state
/// changes) and makes them durable alone with `write`, before the rest of
/// the block's write (broken on purpose).
#[cfg(feature = "teeth")]
pub fn write_state_alone<W, E>(
    writes: &mut Vec<W>,
    is_state: impl Fn(&W) -> bool,
    write: impl FnOnce(Vec<W>) -> Result<(), E>,
) -> Result<(), E> {
    if !active(Tooth::ExecuteNotAtomic) {
        return Ok(());
    }
    let (state, rest) = std::mem::take(writes)
        .into_iter()
        .partition::<Vec<_>, _>(|w| is_state(w));
    *writes = rest;
    write(state)
}

/// Tooth `execute-not-atomic`: nothing without the feature `teeth`.
#[cfg(not(feature = "teeth"))]
#[inline(always)]
pub fn write_state_alone<W, E>(
    _writes: &mut Vec<W>,
    _is_state: impl Fn(&W) -> bool,
    _write: impl FnOnce(Vec<W>) -> Result<(), E>,
) -> Result<(), E> {
    Ok(())
}

/// Tooth `nonce-not-checked` (`ledger::bank`): whether the bank skips its
/// nonce checks (broken on purpose).
#[cfg(feature = "teeth")]
pub fn nonce_not_checked() -> bool {
    active(Tooth::NonceNotChecked)
}

/// Tooth `nonce-not-checked`: never without the feature `teeth`.
#[cfg(not(feature = "teeth"))]
#[inline(always)]
pub fn nonce_not_checked() -> bool {
    false
}

/// Tooth `commit-signature-not-checked` (`crypto`,
/// `Verifier::decode_unverified`): whether a signature goes unchecked
/// (broken on purpose).
#[cfg(feature = "teeth")]
pub fn signature_unchecked() -> bool {
    active(Tooth::CommitSignatureNotChecked)
}

/// Tooth `commit-signature-not-checked`: never without the feature `teeth`.
#[cfg(not(feature = "teeth"))]
#[inline(always)]
pub fn signature_unchecked() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_one_tooth_at_a_time() {
        for (name, tooth, _) in CATALOGUE {
            assert_eq!(by_name(name), Some(*tooth));
            assert_eq!(tooth.name(), *name);
        }
        assert_eq!(by_name("no-such-tooth"), None);
        assert!(!active(Tooth::QuorumTwoF));
    }
}
