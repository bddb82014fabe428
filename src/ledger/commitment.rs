//! An incrementally updated commitment to the bank's accounts (issue 24,
//! defect 6: the state root used to hash every account, twice per block —
//! 200 ms per block at a million accounts).
//!
//! Accounts fall into [`BUCKETS`] buckets by the first two bytes of their key
//! (an ed25519 public key, uniformly spread for honestly made keys). A
//! bucket's leaf hashes its accounts in key order; a complete binary tree of
//! fixed depth [`DEPTH`] sits over the leaves, its nodes cached in one array;
//! the root seals the tree with the account count. After a block, only the
//! buckets the block touched are re-hashed, and only their ancestors: the cost
//! per block grows with the accounts it touches, not with the accounts there
//! are (a bucket holds about `accounts / 65,536` of them: 15 at a million).
//!
//! A key's bucket is its own prefix, so one bucket's accounts are one range
//! of the bank's ordered map. Someone who wants a crowded bucket must grind
//! keys — about 65,536 key generations, and one funded transfer, per account
//! placed — and even then only that bucket's leaf gets slower.

use crate::crypto::{Digest, Domain, PublicKey};

/// Depth of the tree over the buckets.
pub const DEPTH: u32 = 16;
/// Number of buckets (tree leaves).
pub const BUCKETS: usize = 1 << DEPTH;

/// The bucket of an account key.
pub fn bucket_of(key: &PublicKey) -> usize {
    usize::from(u16::from_be_bytes([key.0[0], key.0[1]]))
}

/// The first and last key of a bucket (for a range over an ordered map).
pub fn bucket_bounds(bucket: usize) -> (PublicKey, PublicKey) {
    let prefix = (bucket as u16).to_be_bytes();
    let mut lo = [0u8; 32];
    let mut hi = [0xffu8; 32];
    lo[..2].copy_from_slice(&prefix);
    hi[..2].copy_from_slice(&prefix);
    (PublicKey(lo), PublicKey(hi))
}

/// The leaf of one bucket from its accounts, in key order, each as its key and
/// its 16-byte record. An empty bucket has a leaf too (the same for all).
pub fn leaf<'a>(accounts: impl Iterator<Item = (&'a PublicKey, [u8; 16])>) -> Digest {
    let mut h = Domain::State.hasher();
    h.update(b"leaf");
    for (key, record) in accounts {
        h.update(&key.0);
        h.update(&record);
    }
    Digest(*h.finalize().as_bytes())
}

fn node(left: &Digest, right: &Digest) -> Digest {
    let mut h = Domain::State.hasher();
    h.update(b"node");
    h.update(&left.0);
    h.update(&right.0);
    Digest(*h.finalize().as_bytes())
}

/// The cached tree: `nodes[1]` is the top, `nodes[i]`'s children are
/// `nodes[2i]` and `nodes[2i + 1]`, the leaves are `nodes[BUCKETS..]`
/// (bucket `b` at `BUCKETS + b`); `nodes[0]` is unused.
#[derive(Clone, PartialEq, Eq)]
pub struct Commitment {
    nodes: Vec<Digest>,
}

impl std::fmt::Debug for Commitment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Commitment({})", self.nodes[1])
    }
}

impl Default for Commitment {
    /// The tree over empty buckets. All nodes of one level are equal, so it
    /// takes one hash per level ([`empty_levels`]), not one per node: a
    /// bank is made at every start, restart and snapshot import, and the
    /// 65,535 node hashes were half of a simulation campaign's time.
    fn default() -> Commitment {
        let levels = empty_levels();
        let mut nodes = vec![Digest::default(); 2 * BUCKETS];
        for (depth, digest) in levels.iter().enumerate() {
            nodes[1 << depth..2 << depth].fill(*digest);
        }
        Commitment { nodes }
    }
}

/// The node of an empty tree at each depth: `[0]` the top, `[DEPTH]` the
/// leaf of an empty bucket. Computed once per process.
fn empty_levels() -> &'static [Digest; DEPTH as usize + 1] {
    static LEVELS: std::sync::OnceLock<[Digest; DEPTH as usize + 1]> = std::sync::OnceLock::new();
    LEVELS.get_or_init(|| {
        let mut levels = [Digest::default(); DEPTH as usize + 1];
        levels[DEPTH as usize] = leaf(std::iter::empty());
        for depth in (0..DEPTH as usize).rev() {
            levels[depth] = node(&levels[depth + 1], &levels[depth + 1]);
        }
        levels
    })
}

impl Commitment {
    /// Sets the leaves of the given buckets (ascending, each once) and
    /// re-hashes their ancestors, each once, level by level.
    pub fn set_leaves(&mut self, leaves: impl IntoIterator<Item = (usize, Digest)>) {
        let mut parents: Vec<usize> = Vec::new();
        for (bucket, digest) in leaves {
            debug_assert!(bucket < BUCKETS);
            let at = BUCKETS + bucket;
            self.nodes[at] = digest;
            if parents.last() != Some(&(at / 2)) {
                parents.push(at / 2);
            }
        }
        // `parents` stays ascending and de-duplicated at every level.
        while !parents.is_empty() {
            for &p in &parents {
                self.nodes[p] = node(&self.nodes[2 * p], &self.nodes[2 * p + 1]);
            }
            if parents[0] == 1 {
                break;
            }
            parents.dedup_by_key(|p| *p / 2);
            for p in parents.iter_mut() {
                *p /= 2;
            }
        }
    }

    /// The state root: the tree sealed with the number of accounts.
    pub fn root(&self, accounts: usize) -> Digest {
        let mut h = Domain::State.hasher();
        h.update(&(accounts as u64).to_le_bytes());
        h.update(&self.nodes[1].0);
        Digest(*h.finalize().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_bounds_hold_exactly_the_bucket() {
        for b in [0usize, 1, 0x1234, BUCKETS - 1] {
            let (lo, hi) = bucket_bounds(b);
            assert_eq!(bucket_of(&lo), b);
            assert_eq!(bucket_of(&hi), b);
            let mut next = hi;
            if b + 1 < BUCKETS {
                next.0[1] = next.0[1].wrapping_add(1);
                if next.0[1] == 0 {
                    next.0[0] += 1;
                }
                next.0[2..].fill(0);
                assert_eq!(bucket_of(&next), b + 1);
            }
        }
    }

    /// The empty tree made level by level is the tree made by hashing
    /// every node from the empty leaves up.
    #[test]
    fn the_empty_tree_equals_hashing_every_node() {
        let mut nodes = vec![Digest::default(); 2 * BUCKETS];
        nodes[BUCKETS..].fill(leaf(std::iter::empty()));
        for i in (1..BUCKETS).rev() {
            nodes[i] = node(&nodes[2 * i], &nodes[2 * i + 1]);
        }
        let naive = Commitment { nodes };
        assert_eq!(Commitment::default(), naive);
        assert_eq!(Commitment::default().root(0), naive.root(0));
    }

    /// Updating some leaves gives the tree built from scratch over the same
    /// leaves, whatever the update order and overlap.
    #[test]
    fn incremental_updates_match_a_full_rebuild() {
        let mut inc = Commitment::default();
        let mut all = vec![leaf(std::iter::empty()); BUCKETS];
        let mut seed = 7u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            seed >> 33
        };
        for round in 0..20 {
            let mut touched: Vec<usize> = (0..1 + round * 7)
                .map(|_| next() as usize % BUCKETS)
                .chain([0, BUCKETS - 1].into_iter().filter(|_| round % 5 == 0))
                .collect();
            touched.sort_unstable();
            touched.dedup();
            let updates: Vec<(usize, Digest)> = touched
                .iter()
                .map(|&b| (b, Digest([(next() & 0xff) as u8; 32])))
                .collect();
            for &(b, d) in &updates {
                all[b] = d;
            }
            inc.set_leaves(updates);
            let mut full = Commitment::default();
            full.set_leaves(all.iter().copied().enumerate());
            assert_eq!(inc, full, "round {round}");
            assert_eq!(inc.root(round), full.root(round));
            assert_ne!(
                inc.root(round),
                inc.root(round + 1),
                "the count is sealed in"
            );
        }
    }
}
