//! Cluster arithmetic (L0): `n = 3f + 1`, quorum sizes, and who is primary.

use crate::types::{ReplicaId, View};

/// Membership size and fault threshold. Constructed only through
/// [`Cluster::new`], which refuses sizes that are not `3f + 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cluster {
    n: u32,
    f: u32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClusterError {
    /// PBFT needs `n = 3f + 1` with `f >= 1` (n = 4, 7, 10, ...).
    #[error("replica count {0} is not 3f+1 with f >= 1 (use 4, 7, 10, ...)")]
    BadSize(u32),
}

impl Cluster {
    pub fn new(n: u32) -> Result<Cluster, ClusterError> {
        if n < 4 || !(n - 1).is_multiple_of(3) {
            return Err(ClusterError::BadSize(n));
        }
        Ok(Cluster { n, f: (n - 1) / 3 })
    }
    pub fn n(&self) -> u32 {
        self.n
    }
    pub fn f(&self) -> u32 {
        self.f
    }
    /// `2f + 1`: any two quorums intersect in at least one correct replica.
    pub fn quorum(&self) -> usize {
        (2 * self.f + 1) as usize
    }
    /// `f + 1`: at least one member is correct.
    pub fn weak_quorum(&self) -> usize {
        (self.f + 1) as usize
    }
    pub fn primary(&self, view: View) -> ReplicaId {
        ReplicaId((view.0 % self.n as u64) as u32)
    }
    pub fn replicas(&self) -> impl Iterator<Item = ReplicaId> {
        (0..self.n).map(ReplicaId)
    }
    pub fn contains(&self, id: ReplicaId) -> bool {
        id.0 < self.n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(Cluster::new(3), Err(ClusterError::BadSize(3)));
        assert_eq!(Cluster::new(5), Err(ClusterError::BadSize(5)));
        let c = Cluster::new(4).unwrap();
        assert_eq!((c.f(), c.quorum(), c.weak_quorum()), (1, 3, 2));
        let c = Cluster::new(7).unwrap();
        assert_eq!((c.f(), c.quorum(), c.weak_quorum()), (2, 5, 3));
        assert_eq!(c.primary(View(9)), ReplicaId(2));
    }
}
