//! The catalogue of Byzantine behaviours (TESTING.md, "Faults to inject"):
//! every adversary's name, [`Kind`] and description, and the strategy each
//! runs. The strategies themselves live by concern:
//!
//! | file | strategies |
//! |---|---|
//! | `equivocation.rs` | [`Kind::Equivocate`], [`Kind::DoubleVote`] |
//! | `omission.rs` | [`Kind::Silent`], [`Kind::Slow`], [`Kind::Omit`], [`Kind::Censor`] |
//! | `tampering.rs` | [`Kind::Mutate`], [`Kind::Replay`], [`Kind::SigReuse`] |
//! | `forgery.rs` | [`Kind::Forge`], [`Kind::BadTxs`], [`Kind::BadCheckpoint`] |
//! | `view_change.rs` | [`Kind::ForgedViewChange`], [`Kind::BadNewView`], [`Kind::ViewChangeStorm`] |
//! | `flooding.rs` | [`Kind::FarFlood`], [`Kind::Malformed`], [`Kind::SigFlood`], [`Kind::FetchNeverRead`] |
//! | `lying_answers.rs` | [`Kind::LyingAnswers`] |
//!
//! Each strategy only uses what a malicious replica has: its own key, the
//! messages it receives and sends, and (for colluders) what other Byzantine
//! replicas tell it. Messages it attributes to others carry signatures it
//! cannot make, so they are either replays of real ones or forgeries.

use super::equivocation::{DoubleVote, Equivocate};
use super::flooding::{FarFlood, FetchNeverRead, Malformed, SigFlood};
use super::forgery::{BadCheckpoint, BadTxs, Forge};
use super::lying_answers::LyingAnswers;
use super::omission::{Censor, Omit, Silent, Slow};
use super::tampering::{Mutate, Replay, SigReuse};
use super::view_change::{BadNewView, ForgedViewChange, ViewChangeStorm};
use super::Strategy;

/// The adversaries `pbft-sim` knows, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Equivocate,
    DoubleVote,
    Silent,
    Slow,
    Omit,
    Mutate,
    Replay,
    SigReuse,
    Forge,
    BadTxs,
    BadCheckpoint,
    ForgedViewChange,
    BadNewView,
    ViewChangeStorm,
    FarFlood,
    Malformed,
    Censor,
    SigFlood,
    LyingAnswers,
    FetchNeverRead,
    Clients,
    Twins,
}

/// Name, kind and one-line description of every adversary.
pub const CATALOGUE: &[(&str, Kind, &str)] = &[
    ("equivocate", Kind::Equivocate, "primary sends conflicting PRE-PREPAREs for each seq to two groups of replicas; colluders vote for both sides"),
    ("double-vote", Kind::DoubleVote, "signs a second PREPARE and COMMIT for another digest in every slot, sent to part of the replicas"),
    ("silent", Kind::Silent, "sends nothing while it is the primary (but keeps receiving)"),
    ("slow", Kind::Slow, "primary holds every PRE-PREPARE back for 90% of the request timeout"),
    ("omit", Kind::Omit, "selective omission: nothing reaches one honest replica, no COMMIT reaches another"),
    ("mutate", Kind::Mutate, "ByzzFuzz small-scope mutation: re-signs messages with view, seq or digest nudged, or drops them, per recipient"),
    ("replay", Kind::Replay, "re-sends old messages (its own and others') to random replicas"),
    ("sig-reuse", Kind::SigReuse, "re-labels signed votes as another phase or view without re-signing, its own and others'"),
    ("forge", Kind::Forge, "votes, checkpoints and catch-up batches with forged signatures or signers, and bit-flipped signatures"),
    ("bad-txs", Kind::BadTxs, "primary puts a badly signed transaction into every batch"),
    ("bad-checkpoint", Kind::BadCheckpoint, "CHECKPOINTs with wrong digests, and claims of checkpoints it never reached"),
    ("forged-view-change", Kind::ForgedViewChange, "VIEW-CHANGEs carrying fake prepared certificates (duplicate, forged or thousands of one signer's PREPAREs) for committed seqs, and checkpoint proofs of one CHECKPOINT repeated"),
    ("bad-new-view", Kind::BadNewView, "as new primary, sends a NEW-VIEW whose O-set replaces prepared requests with null requests"),
    ("view-change-storm", Kind::ViewChangeStorm, "valid SUSPECTs and VIEW-CHANGEs for ever-higher views, all the time"),
    ("far-flood", Kind::FarFlood, "floods votes, checkpoints and fetches for seqs and views far beyond the window"),
    ("malformed", Kind::Malformed, "garbage, truncated, corrupted and oversized frames"),
    ("censor", Kind::Censor, "primary keeps the chain moving with stale, already executed transactions only, and never proposes a pending request"),
    ("sig-flood", Kind::SigFlood, "floods every replica with frames that each cost a signature check and bring nothing: its votes with broken signatures, and validly signed votes of past views"),
    ("lying-answers", Kind::LyingAnswers, "answers clients' balance queries with lies: nonces of u64::MAX - 1, u64::MAX, beyond the bank's nonce jump, zero or stale; balances inflated or zero"),
    ("fetch-and-never-read", Kind::FetchNeverRead, "keeps asking every replica for catch-up batches, faster than they serve, and never reads anything they send it"),
    ("clients", Kind::Clients, "Byzantine clients: bad signatures, replayed and conflicting nonces, request floods"),
    ("twins", Kind::Twins, "two instances of one replica share its key, each talking to part of the network"),
];

/// Looks an adversary up by name.
pub fn by_name(name: &str) -> Option<Kind> {
    CATALOGUE
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, k, _)| *k)
}

impl Kind {
    pub fn name(self) -> &'static str {
        CATALOGUE
            .iter()
            .find(|(_, k, _)| *k == self)
            .map(|(n, _, _)| *n)
            .expect("every kind is catalogued")
    }

    /// Whether the Byzantine replica should be the primary of view 0 (the
    /// behaviour only shows in a primary).
    pub fn wants_primary(self) -> bool {
        matches!(
            self,
            Kind::Equivocate | Kind::Silent | Kind::Slow | Kind::BadTxs | Kind::Censor
        )
    }

    /// Whether the behaviour only shows during a view change, so the
    /// scenario must force one (the Byzantine replica is then the primary
    /// of view 1, and the primary of view 0 crashes for a while).
    pub fn wants_view_change(self) -> bool {
        matches!(self, Kind::BadNewView | Kind::ForgedViewChange)
    }

    /// Whether the Byzantine replica never reads what other replicas send
    /// it: their frames for it stay in their outbound queues.
    pub fn never_reads(self) -> bool {
        self == Kind::FetchNeverRead
    }

    /// Whether the Byzantine replica may keep its own VIEW-CHANGE from a
    /// correct replica: it is silent (while it believes it leads, which it
    /// does for the whole view change away from its view), omits or drops
    /// messages to some replicas, replaces its VIEW-CHANGE with a forged
    /// one, or never reads. With such a replica and a crashed one, more
    /// than f replicas may be out of a view change, and PBFT promises no
    /// progress (seed 1402656: `silent` primary of view 0, the primary of
    /// view 1 crashed in the write that entered it).
    pub fn may_withhold_view_changes(self) -> bool {
        matches!(
            self,
            Kind::Silent
                | Kind::Omit
                | Kind::Mutate
                | Kind::ForgedViewChange
                | Kind::FetchNeverRead
        )
    }

    /// The strategy a Byzantine replica runs (`None` for adversaries that
    /// are not replica strategies: clients and twins).
    pub fn strategy(self) -> Option<Box<dyn Strategy>> {
        Some(match self {
            Kind::Equivocate => Box::new(Equivocate::default()),
            Kind::DoubleVote => Box::new(DoubleVote),
            Kind::Silent => Box::new(Silent),
            Kind::Slow => Box::new(Slow),
            Kind::Omit => Box::new(Omit),
            Kind::Mutate => Box::new(Mutate),
            Kind::Replay => Box::new(Replay::default()),
            Kind::SigReuse => Box::new(SigReuse::default()),
            Kind::Forge => Box::new(Forge),
            Kind::BadTxs => Box::new(BadTxs::default()),
            Kind::BadCheckpoint => Box::new(BadCheckpoint),
            Kind::ForgedViewChange => Box::new(ForgedViewChange::default()),
            Kind::BadNewView => Box::new(BadNewView),
            Kind::ViewChangeStorm => Box::new(ViewChangeStorm),
            Kind::FarFlood => Box::new(FarFlood),
            Kind::Malformed => Box::new(Malformed),
            Kind::Censor => Box::new(Censor::default()),
            Kind::SigFlood => Box::new(SigFlood),
            Kind::LyingAnswers => Box::new(LyingAnswers),
            Kind::FetchNeverRead => Box::new(FetchNeverRead::default()),
            Kind::Clients | Kind::Twins => return None,
        })
    }
}
