//! Why the core refused an input: one variant per rule, counted in
//! [`Stats::ignored`](super::Stats). `Display` gives the text operators see
//! (`pbft-client status --stats`, the simulator's refusal counts), which
//! scripts and tests outside the crate match on: keep it stable.

use std::fmt;

/// A rule an input broke (or the reason it could not be used).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Refusal {
    /// batches: batch holds a badly signed transaction
    BatchesBadlySignedTx,
    /// batches: batch too large
    BatchesBatchTooLarge,
    /// batches: certificate below quorum
    BatchesCertificateBelowQuorum,
    /// batches: certificate has a bad signature
    BatchesCertificateBadSignature,
    /// batches: certificate is for another seq or digest
    BatchesCertificateMismatch,
    /// batches: certificate mixes views
    BatchesCertificateMixesViews,
    /// batches: certificate repeats a signer or is too long
    BatchesCertificateRepeatsSigner,
    /// batches: malformed batch
    BatchesMalformedBatch,
    /// batches: no fetch in progress
    BatchesNotFetching,
    /// checkpoint: at or below the stable checkpoint
    CheckpointNotAboveStable,
    /// checkpoint: bad signature or payload
    CheckpointBadSignature,
    /// checkpoint: duplicate
    CheckpointDuplicate,
    /// checkpoint: not a checkpoint seq
    CheckpointNotACheckpointSeq,
    /// commit: after its quorum (not checked)
    CommitAfterQuorum,
    /// commit: bad signature or payload
    CommitBadSignature,
    /// commit: duplicate
    CommitDuplicate,
    /// commit: f+1 commit a digest other than our pre-prepare's; fetching
    CommitOtherDigestFetching,
    /// commit: second digest from one signer (equivocation)
    CommitEquivocation,
    /// commit: seq above the watermark window
    CommitAboveWindow,
    /// commit: seq outside the watermark window
    CommitOutsideWindow,
    /// fetch reached the core (the node serves it)
    FetchReachedCore,
    /// future-view buffer full for sender
    FutureBufferFull,
    /// message for a far-future view
    FarFutureView,
    /// message for a view being abandoned
    AbandonedView,
    /// message for an older view
    OlderView,
    /// message from unknown or own replica id
    UnknownSender,
    /// new-view: O-set does not match the view-changes
    NewViewWrongOSet,
    /// new-view: bad pre-prepare signature
    NewViewBadPrePrepareSignature,
    /// new-view: bad signature or payload
    NewViewBadSignature,
    /// new-view: bad view-change signature
    NewViewBadViewChangeSignature,
    /// new-view: fewer than 2f+1 view-changes
    NewViewBelowQuorum,
    /// new-view: more view-changes than replicas
    NewViewTooManyViewChanges,
    /// new-view: not above our view
    NewViewNotAboveOurView,
    /// new-view: not from the new view's primary
    NewViewNotFromPrimary,
    /// new-view: re-proposed batch is malformed
    NewViewMalformedBatch,
    /// new-view: view-change for another view or repeated signer
    NewViewViewChangeMismatch,
    /// peer over its allowance of wasted signature checks (not checked)
    WastedChecksSpent,
    /// pre-prepare: bad signature or payload
    PrePrepareBadSignature,
    /// pre-prepare: batch does not match digest
    PrePrepareDigestMismatch,
    /// pre-prepare: batch holds a badly signed transaction
    PrePrepareBadlySignedTx,
    /// pre-prepare: batch size out of bounds
    PrePrepareBatchSizeOutOfBounds,
    /// pre-prepare: batch too large
    PrePrepareBatchTooLarge,
    /// pre-prepare: conflicting digest (equivocation)
    PrePrepareEquivocation,
    /// pre-prepare: conflicts with a prepare we signed
    PrePrepareConflictsWithOurPrepare,
    /// pre-prepare: duplicate
    PrePrepareDuplicate,
    /// pre-prepare: malformed batch
    PrePrepareMalformedBatch,
    /// pre-prepare: not from the primary
    PrePrepareNotFromPrimary,
    /// pre-prepare: seq outside the watermark window
    PrePrepareOutsideWindow,
    /// pre-prepare: timestamp too far from local clock
    PrePrepareClockSkew,
    /// prepare: after its quorum (not checked)
    PrepareAfterQuorum,
    /// prepare: bad signature or payload
    PrepareBadSignature,
    /// prepare: duplicate
    PrepareDuplicate,
    /// prepare: second digest from one signer (equivocation)
    PrepareEquivocation,
    /// prepare: sent by the primary
    PrepareFromPrimary,
    /// prepare: seq outside the watermark window
    PrepareOutsideWindow,
    /// prepared: conflicts with a commit we signed
    PreparedConflictsWithOurCommit,
    /// reply sent to a replica
    ReplyToReplica,
    /// request: bad client signature
    RequestBadSignature,
    /// request: pending set full
    RequestPendingFull,
    /// request: too many pending for client
    RequestClientPendingFull,
    /// suspect: bad signature or payload
    SuspectBadSignature,
    /// suspect: for an older view
    SuspectOlderView,
    /// suspect: not newer than the sender's last
    SuspectNotNewer,
    /// view-change: bad signature or payload
    ViewChangeBadSignature,
    /// view-change: checkpoint proof below quorum
    ViewChangeCheckpointProofBelowQuorum,
    /// view-change: checkpoint proof does not match
    ViewChangeCheckpointProofMismatch,
    /// view-change: checkpoint proof has a bad signature
    ViewChangeCheckpointProofBadSignature,
    /// view-change: checkpoint proof repeats a signer or is too long
    ViewChangeCheckpointProofRepeatsSigner,
    /// view-change: for a view we already entered
    ViewChangeForEnteredView,
    /// view-change: its sender's VIEW-CHANGE for this view was refused
    ViewChangeSenderRefused,
    /// view-change: more prepared proofs than the window holds
    ViewChangeTooManyPreparedProofs,
    /// view-change: not newer than the sender's last
    ViewChangeNotNewer,
    /// view-change: over the sender's rate of certificate checks
    ViewChangeChecksPaced,
    /// view-change: prepared proof batch does not match
    ViewChangePreparedBatchMismatch,
    /// view-change: prepared proof below quorum
    ViewChangePreparedBelowQuorum,
    /// view-change: prepared proof counts the primary's prepare
    ViewChangePreparedCountsPrimary,
    /// view-change: prepared proof from a view not below the new view
    ViewChangePreparedViewNotBelow,
    /// view-change: prepared proof has a bad pre-prepare
    ViewChangePreparedBadPrePrepare,
    /// view-change: prepared proof has a bad prepare
    ViewChangePreparedBadPrepare,
    /// view-change: prepared proof outside the window
    ViewChangePreparedOutsideWindow,
    /// view-change: prepared proof pre-prepare not from its primary
    ViewChangePreparedNotFromPrimary,
    /// view-change: prepared proof prepare does not match
    ViewChangePreparedPrepareMismatch,
    /// view-change: prepared proof repeats a signer or is too long
    ViewChangePreparedRepeatsSigner,
    /// view-change: proof for the genesis checkpoint
    ViewChangeGenesisCheckpointProof,
    /// view-change: stable seq is not a checkpoint seq
    ViewChangeStableNotCheckpointSeq,
    /// view-change: two prepared proofs for one seq
    ViewChangeTwoPreparedProofs,
}

impl Refusal {
    /// The reason as operators read it.
    pub fn text(self) -> &'static str {
        match self {
            Refusal::BatchesBadlySignedTx => "batches: batch holds a badly signed transaction",
            Refusal::BatchesBatchTooLarge => "batches: batch too large",
            Refusal::BatchesCertificateBelowQuorum => "batches: certificate below quorum",
            Refusal::BatchesCertificateBadSignature => "batches: certificate has a bad signature",
            Refusal::BatchesCertificateMismatch => {
                "batches: certificate is for another seq or digest"
            }
            Refusal::BatchesCertificateMixesViews => "batches: certificate mixes views",
            Refusal::BatchesCertificateRepeatsSigner => {
                "batches: certificate repeats a signer or is too long"
            }
            Refusal::BatchesMalformedBatch => "batches: malformed batch",
            Refusal::BatchesNotFetching => "batches: no fetch in progress",
            Refusal::CheckpointNotAboveStable => "checkpoint: at or below the stable checkpoint",
            Refusal::CheckpointBadSignature => "checkpoint: bad signature or payload",
            Refusal::CheckpointDuplicate => "checkpoint: duplicate",
            Refusal::CheckpointNotACheckpointSeq => "checkpoint: not a checkpoint seq",
            Refusal::CommitAfterQuorum => "commit: after its quorum (not checked)",
            Refusal::CommitBadSignature => "commit: bad signature or payload",
            Refusal::CommitDuplicate => "commit: duplicate",
            Refusal::CommitOtherDigestFetching => {
                "commit: f+1 commit a digest other than our pre-prepare's; fetching"
            }
            Refusal::CommitEquivocation => "commit: second digest from one signer (equivocation)",
            Refusal::CommitAboveWindow => "commit: seq above the watermark window",
            Refusal::CommitOutsideWindow => "commit: seq outside the watermark window",
            Refusal::FetchReachedCore => "fetch reached the core (the node serves it)",
            Refusal::FutureBufferFull => "future-view buffer full for sender",
            Refusal::FarFutureView => "message for a far-future view",
            Refusal::AbandonedView => "message for a view being abandoned",
            Refusal::OlderView => "message for an older view",
            Refusal::UnknownSender => "message from unknown or own replica id",
            Refusal::NewViewWrongOSet => "new-view: O-set does not match the view-changes",
            Refusal::NewViewBadPrePrepareSignature => "new-view: bad pre-prepare signature",
            Refusal::NewViewBadSignature => "new-view: bad signature or payload",
            Refusal::NewViewBadViewChangeSignature => "new-view: bad view-change signature",
            Refusal::NewViewBelowQuorum => "new-view: fewer than 2f+1 view-changes",
            Refusal::NewViewTooManyViewChanges => "new-view: more view-changes than replicas",
            Refusal::NewViewNotAboveOurView => "new-view: not above our view",
            Refusal::NewViewNotFromPrimary => "new-view: not from the new view's primary",
            Refusal::NewViewMalformedBatch => "new-view: re-proposed batch is malformed",
            Refusal::NewViewViewChangeMismatch => {
                "new-view: view-change for another view or repeated signer"
            }
            Refusal::WastedChecksSpent => {
                "peer over its allowance of wasted signature checks (not checked)"
            }
            Refusal::PrePrepareBadSignature => "pre-prepare: bad signature or payload",
            Refusal::PrePrepareDigestMismatch => "pre-prepare: batch does not match digest",
            Refusal::PrePrepareBadlySignedTx => {
                "pre-prepare: batch holds a badly signed transaction"
            }
            Refusal::PrePrepareBatchSizeOutOfBounds => "pre-prepare: batch size out of bounds",
            Refusal::PrePrepareBatchTooLarge => "pre-prepare: batch too large",
            Refusal::PrePrepareEquivocation => "pre-prepare: conflicting digest (equivocation)",
            Refusal::PrePrepareConflictsWithOurPrepare => {
                "pre-prepare: conflicts with a prepare we signed"
            }
            Refusal::PrePrepareDuplicate => "pre-prepare: duplicate",
            Refusal::PrePrepareMalformedBatch => "pre-prepare: malformed batch",
            Refusal::PrePrepareNotFromPrimary => "pre-prepare: not from the primary",
            Refusal::PrePrepareOutsideWindow => "pre-prepare: seq outside the watermark window",
            Refusal::PrePrepareClockSkew => "pre-prepare: timestamp too far from local clock",
            Refusal::PrepareAfterQuorum => "prepare: after its quorum (not checked)",
            Refusal::PrepareBadSignature => "prepare: bad signature or payload",
            Refusal::PrepareDuplicate => "prepare: duplicate",
            Refusal::PrepareEquivocation => "prepare: second digest from one signer (equivocation)",
            Refusal::PrepareFromPrimary => "prepare: sent by the primary",
            Refusal::PrepareOutsideWindow => "prepare: seq outside the watermark window",
            Refusal::PreparedConflictsWithOurCommit => {
                "prepared: conflicts with a commit we signed"
            }
            Refusal::ReplyToReplica => "reply sent to a replica",
            Refusal::RequestBadSignature => "request: bad client signature",
            Refusal::RequestPendingFull => "request: pending set full",
            Refusal::RequestClientPendingFull => "request: too many pending for client",
            Refusal::SuspectBadSignature => "suspect: bad signature or payload",
            Refusal::SuspectOlderView => "suspect: for an older view",
            Refusal::SuspectNotNewer => "suspect: not newer than the sender's last",
            Refusal::ViewChangeBadSignature => "view-change: bad signature or payload",
            Refusal::ViewChangeCheckpointProofBelowQuorum => {
                "view-change: checkpoint proof below quorum"
            }
            Refusal::ViewChangeCheckpointProofMismatch => {
                "view-change: checkpoint proof does not match"
            }
            Refusal::ViewChangeCheckpointProofBadSignature => {
                "view-change: checkpoint proof has a bad signature"
            }
            Refusal::ViewChangeCheckpointProofRepeatsSigner => {
                "view-change: checkpoint proof repeats a signer or is too long"
            }
            Refusal::ViewChangeForEnteredView => "view-change: for a view we already entered",
            Refusal::ViewChangeSenderRefused => {
                "view-change: its sender's VIEW-CHANGE for this view was refused"
            }
            Refusal::ViewChangeTooManyPreparedProofs => {
                "view-change: more prepared proofs than the window holds"
            }
            Refusal::ViewChangeNotNewer => "view-change: not newer than the sender's last",
            Refusal::ViewChangeChecksPaced => {
                "view-change: over the sender's rate of certificate checks"
            }
            Refusal::ViewChangePreparedBatchMismatch => {
                "view-change: prepared proof batch does not match"
            }
            Refusal::ViewChangePreparedBelowQuorum => "view-change: prepared proof below quorum",
            Refusal::ViewChangePreparedCountsPrimary => {
                "view-change: prepared proof counts the primary's prepare"
            }
            Refusal::ViewChangePreparedViewNotBelow => {
                "view-change: prepared proof from a view not below the new view"
            }
            Refusal::ViewChangePreparedBadPrePrepare => {
                "view-change: prepared proof has a bad pre-prepare"
            }
            Refusal::ViewChangePreparedBadPrepare => {
                "view-change: prepared proof has a bad prepare"
            }
            Refusal::ViewChangePreparedOutsideWindow => {
                "view-change: prepared proof outside the window"
            }
            Refusal::ViewChangePreparedNotFromPrimary => {
                "view-change: prepared proof pre-prepare not from its primary"
            }
            Refusal::ViewChangePreparedPrepareMismatch => {
                "view-change: prepared proof prepare does not match"
            }
            Refusal::ViewChangePreparedRepeatsSigner => {
                "view-change: prepared proof repeats a signer or is too long"
            }
            Refusal::ViewChangeGenesisCheckpointProof => {
                "view-change: proof for the genesis checkpoint"
            }
            Refusal::ViewChangeStableNotCheckpointSeq => {
                "view-change: stable seq is not a checkpoint seq"
            }
            Refusal::ViewChangeTwoPreparedProofs => "view-change: two prepared proofs for one seq",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text())
    }
}
