//! Merkle trees over digests: roots, and paths that prove one leaf is in a
//! tree with a given root.
//!
//! Shape: leaves are paired left to right, an unpaired last node is carried
//! up unchanged, inner nodes are `digest(MerkleNode, left ‖ right)`, and the
//! root is `digest(MerkleNode, count ‖ top)`. Callers hash their leaves under
//! their own [`Domain`] (never `MerkleNode`), so an inner node cannot pass for
//! a leaf, and the count in the root keeps a list and a prefix of it (or a
//! list with its last leaf doubled) apart.
//!
//! A path lists the siblings from the leaf up, skipping the levels where the
//! node was carried: with the leaf's index and the leaf count, the verifier
//! knows at each level whether there is a sibling and on which side.

use super::{digest, Digest, Domain};

fn node(left: &Digest, right: &Digest) -> Digest {
    digest(Domain::MerkleNode, &[&left.0, &right.0])
}

fn seal(count: usize, top: &Digest) -> Digest {
    digest(Domain::MerkleNode, &[&(count as u64).to_le_bytes(), &top.0])
}

fn parent_level(level: &[Digest]) -> Vec<Digest> {
    level
        .chunks(2)
        .map(|pair| match pair {
            [l, r] => node(l, r),
            [one] => *one,
            _ => unreachable!("chunks(2) yields one or two"),
        })
        .collect()
}

/// The root over `leaves` (in order).
pub fn root(leaves: &[Digest]) -> Digest {
    if leaves.is_empty() {
        return digest(Domain::MerkleNode, &[&0u64.to_le_bytes()]);
    }
    let mut level = leaves.to_vec();
    while level.len() > 1 {
        level = parent_level(&level);
    }
    seal(leaves.len(), &level[0])
}

/// The root over `leaves` and every leaf's path (`paths[i]` proves
/// `leaves[i]`). Empty input gives the empty root and no paths.
pub fn root_and_paths(leaves: &[Digest]) -> (Digest, Vec<Vec<Digest>>) {
    let mut paths = vec![Vec::new(); leaves.len()];
    if leaves.is_empty() {
        return (root(leaves), paths);
    }
    let mut level = leaves.to_vec();
    // `span` leaves sit under each node of the current level.
    let mut span = 1usize;
    while level.len() > 1 {
        for (i, path) in paths.iter_mut().enumerate() {
            let at = i / span;
            if let Some(sibling) = level.get(at ^ 1) {
                path.push(*sibling);
            }
        }
        level = parent_level(&level);
        span *= 2;
    }
    (seal(leaves.len(), &level[0]), paths)
}

/// The path of the leaf at `index` alone (the same as
/// `root_and_paths(leaves).1[index]`, without building the others), or
/// `None` if there is no such leaf.
pub fn path(leaves: &[Digest], index: usize) -> Option<Vec<Digest>> {
    if index >= leaves.len() {
        return None;
    }
    let mut path = Vec::new();
    let mut level = leaves.to_vec();
    let mut at = index;
    while level.len() > 1 {
        if let Some(sibling) = level.get(at ^ 1) {
            path.push(*sibling);
        }
        level = parent_level(&level);
        at /= 2;
    }
    Some(path)
}

/// The root that `path` leads to from `leaf` at `index` of `count` leaves,
/// or `None` if the path has the wrong length for that position.
pub fn root_from_path(leaf: Digest, index: usize, count: usize, path: &[Digest]) -> Option<Digest> {
    if index >= count {
        return None;
    }
    let (mut at, mut width, mut acc) = (index, count, leaf);
    let mut siblings = path.iter();
    while width > 1 {
        let sibling = at ^ 1;
        if sibling < width {
            let s = siblings.next()?;
            acc = if at % 2 == 0 {
                node(&acc, s)
            } else {
                node(s, &acc)
            };
        }
        at /= 2;
        width = width.div_ceil(2);
    }
    if siblings.next().is_some() {
        return None;
    }
    Some(seal(count, &acc))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Digest> {
        (0..n)
            .map(|i| digest(Domain::MerkleLeaf, &[&(i as u64).to_le_bytes()]))
            .collect()
    }

    #[test]
    fn every_path_leads_to_the_root_and_nothing_else_does() {
        for n in 1..=33 {
            let l = leaves(n);
            let (r, paths) = root_and_paths(&l);
            assert_eq!(r, root(&l), "n={n}");
            assert_eq!(super::path(&l, n), None);
            for (i, path) in paths.iter().enumerate() {
                assert_eq!(super::path(&l, i).as_ref(), Some(path), "n={n} i={i}");
                assert_eq!(root_from_path(l[i], i, n, path), Some(r), "n={n} i={i}");
                // Another leaf, another position or another count fails.
                let other = (i + 1) % n;
                if other != i {
                    assert_ne!(root_from_path(l[other], i, n, path), Some(r));
                    assert_ne!(root_from_path(l[i], other, n, path), Some(r));
                }
                assert_ne!(root_from_path(l[i], i, n + 1, path), Some(r));
                assert_eq!(root_from_path(l[i], n, n, path), None);
                // A path with a sibling missing or one too many fails.
                if let Some((_, short)) = path.split_last() {
                    assert_ne!(root_from_path(l[i], i, n, short), Some(r));
                }
                let mut long = path.clone();
                long.push(l[0]);
                assert_eq!(root_from_path(l[i], i, n, &long), None);
            }
        }
    }

    #[test]
    fn roots_bind_order_and_count() {
        let l = leaves(5);
        let mut seen = std::collections::BTreeSet::new();
        for n in 0..=5 {
            assert!(seen.insert(root(&l[..n])), "root of {n} collides");
        }
        let mut swapped = l.clone();
        swapped.swap(1, 2);
        assert_ne!(root(&l), root(&swapped));
        // Doubling the last leaf must not give the same root (CVE-2012-2459).
        let mut dup = l[..3].to_vec();
        dup.push(l[2]);
        assert_ne!(root(&l[..3]), root(&dup));
    }
}
