//! Plain newtypes shared by every layer (L0).
//!
//! `View`, `Seq` and `ReplicaId` are kept distinct so a view number can never be
//! passed where a sequence number is expected. `Time` is virtual or wall time in
//! microseconds; the consensus core only ever receives it as an argument.

use rkyv::{Archive, Deserialize, Serialize};
use std::fmt;

macro_rules! newtype {
    ($(#[$m:meta])* $name:ident($inner:ty), $fmt:literal) => {
        $(#[$m])*
        #[derive(Archive, Serialize, Deserialize, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        #[rkyv(derive(Debug, PartialEq, Eq, PartialOrd, Ord))]
        pub struct $name(pub $inner);

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, $fmt, self.0)
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

newtype!(
    /// A PBFT view number; the primary of view `v` is replica `v mod n`.
    View(u64), "v{}"
);
newtype!(
    /// A sequence number assigned by the primary; equal to the block height.
    Seq(u64), "s{}"
);
newtype!(
    /// Index of a replica in genesis order, `0..n`.
    ReplicaId(u32), "r{}"
);

impl View {
    /// The view after this one. Saturates: views and seqs come from peers
    /// too, and `u64::MAX` (never reached by a correct network) must not
    /// panic a debug build or wrap to 0 in release (issue 24, defect 11).
    pub fn next(self) -> View {
        View(self.0.saturating_add(1))
    }
}

impl Seq {
    /// The seq after this one (saturating, as [`View::next`]).
    pub fn next(self) -> Seq {
        Seq(self.0.saturating_add(1))
    }
    pub fn prev(self) -> Seq {
        Seq(self.0.saturating_sub(1))
    }
}

impl ReplicaId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// A point in time in microseconds. In production it is wall-clock time since
/// the Unix epoch; in simulation it is virtual time. The core never reads a clock.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Debug)]
pub struct Time(pub u64);

impl Time {
    pub const ZERO: Time = Time(0);
    pub fn from_millis(ms: u64) -> Time {
        Time(ms.saturating_mul(1000))
    }
    pub fn as_millis(self) -> u64 {
        self.0 / 1000
    }
    pub fn plus_millis(self, ms: u64) -> Time {
        Time(self.0.saturating_add(ms.saturating_mul(1000)))
    }
    pub fn saturating_sub_millis(self, other: Time) -> u64 {
        self.0.saturating_sub(other.0) / 1000
    }
}
