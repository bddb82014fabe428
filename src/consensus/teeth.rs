//! The teeth hooks as the core calls them (deliberately broken variants,
//! `crate::teeth`, feature `teeth`): each names one shortcut and is called,
//! in one line, at the one place it breaks the core.
//!
//! With the feature these are the "consensus hooks" of `crate::teeth`, plus
//! the few below that need the core's own types. Without it (`crate::teeth`
//! is not compiled then) each is an inline constant — no tooth, the honest
//! value — so the few broken branches left at a call site (behind a hook
//! that is `false`) are dead code the compiler drops, and the broken code
//! that needs the feature (`Verifier::decode_unverified`) lives here.

use super::messages::{Commit, Message, PrePrepare};
use super::proofs::OSet;
use crate::crypto::{Signed, Verified, Verifier, VerifyError};

#[cfg(feature = "teeth")]
pub(super) use crate::teeth::{
    abstain_not_persisted, censored, checkpoint_quorum, core_broken, equivocation_guard_off,
    lost_store_votes_afresh, no_cap_on_future_buffering, proposal_seq, quorum,
    restart_votes_in_crash_view, signers_counted, signers_not_deduplicated,
    view_change_proof_not_checked,
};

#[cfg(not(feature = "teeth"))]
pub(super) use off::*;

/// The honest values of `crate::teeth`'s consensus hooks.
#[cfg(not(feature = "teeth"))]
mod off {
    #[inline(always)]
    pub(in super::super) fn core_broken() -> bool {
        false
    }
    #[inline(always)]
    pub(in super::super) fn quorum(quorum: usize) -> usize {
        quorum
    }
    #[inline(always)]
    pub(in super::super) fn checkpoint_quorum(quorum: usize, _f: usize, _weak: usize) -> usize {
        quorum
    }
    #[inline(always)]
    pub(in super::super) fn signers_not_deduplicated() -> bool {
        false
    }
    #[inline(always)]
    pub(in super::super) fn signers_counted(distinct: usize, _listed: usize) -> usize {
        distinct
    }
    #[inline(always)]
    pub(in super::super) fn no_cap_on_future_buffering() -> bool {
        false
    }
    #[inline(always)]
    pub(in super::super) fn equivocation_guard_off() -> bool {
        false
    }
    #[inline(always)]
    pub(in super::super) fn view_change_proof_not_checked() -> bool {
        false
    }
    #[inline(always)]
    pub(in super::super) fn censored(censored: bool) -> bool {
        censored
    }
    #[inline(always)]
    pub(in super::super) fn lost_store_votes_afresh() -> bool {
        false
    }
    #[inline(always)]
    pub(in super::super) fn restart_votes_in_crash_view() -> bool {
        false
    }
    #[inline(always)]
    pub(in super::super) fn proposal_seq<S: Ord>(next: S, above_executed: S) -> S {
        next.max(above_executed)
    }
    #[inline(always)]
    pub(in super::super) fn abstain_not_persisted() -> bool {
        false
    }
}

/// Tooth `commit-signature-not-checked`: a COMMIT taken without a check of
/// its signature (`None`: check it as usual).
#[cfg(feature = "teeth")]
pub(super) fn unchecked_commit(verifier: &Verifier, message: &Message) -> Option<Verified<Commit>> {
    match message {
        Message::Commit(c) if crate::teeth::commit_signature_not_checked() => {
            verifier.decode_unverified(c).ok()
        }
        _ => None,
    }
}
#[cfg(not(feature = "teeth"))]
#[inline(always)]
pub(super) fn unchecked_commit(_: &Verifier, _: &Message) -> Option<Verified<Commit>> {
    None
}

/// A COMMIT of a fetched commit certificate, checked (or, with tooth
/// `commit-signature-not-checked`, only decoded).
#[cfg(feature = "teeth")]
pub(super) fn verify_commit(
    verifier: &Verifier,
    c: &Signed<Commit>,
) -> Result<Verified<Commit>, VerifyError> {
    if crate::teeth::commit_signature_not_checked() {
        verifier.decode_unverified::<Commit>(c)
    } else {
        verifier.verify::<Commit>(c)
    }
}
#[cfg(not(feature = "teeth"))]
#[inline(always)]
pub(super) fn verify_commit(
    verifier: &Verifier,
    c: &Signed<Commit>,
) -> Result<Verified<Commit>, VerifyError> {
    verifier.verify::<Commit>(c)
}

/// The O-set a backup checks a NEW-VIEW against: the one it recomputed, or
/// with tooth `o-set-not-checked` that one as the NEW-VIEW's PRE-PREPAREs
/// claim it, where they re-propose a null request (a Byzantine primary can
/// then drop a prepared, perhaps committed, request).
#[cfg(feature = "teeth")]
pub(super) fn o_set(mut o: OSet, pre_prepares: &[Signed<PrePrepare>]) -> OSet {
    use crate::crypto::Payload;
    if !crate::teeth::o_set_not_checked() {
        return o;
    }
    let (null_digest, _, null_bytes) = super::Replica::null_batch();
    for (entry, s) in o.entries.iter_mut().zip(pre_prepares) {
        if PrePrepare::decode(&s.payload).is_ok_and(|pp| pp.digest == null_digest) {
            entry.digest = null_digest;
            entry.batch = null_bytes.to_vec();
        }
    }
    o
}
#[cfg(not(feature = "teeth"))]
#[inline(always)]
pub(super) fn o_set(o: OSet, _: &[Signed<PrePrepare>]) -> OSet {
    o
}
