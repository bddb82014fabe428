//! Judging a run once the faults stop: liveness (every client finished,
//! 2f+1 replicas operate in one view, every correct replica caught up)
//! and, at the end, the stored commit certificates (S5).

use super::*;

impl Sim {
    /// The view that at least 2f+1 replicas are in (not changing), if any.
    /// Byzantine replicas count as their (honest) core reports: a quorum
    /// that needs one works until it stops cooperating, and then f+1 correct
    /// replicas suspect the primary and move on.
    pub(super) fn operating_view(&self) -> Option<crate::types::View> {
        let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
        for n in self
            .nodes
            .iter()
            .take(self.scenario.replicas as usize)
            .flatten()
        {
            if n.replica().changing_to().is_none() {
                *counts.entry(n.replica().view().0).or_default() += 1;
            }
        }
        let quorum = self.genesis.cluster.quorum();
        counts
            .into_iter()
            .find(|(_, c)| *c >= quorum)
            .map(|(v, _)| crate::types::View(v))
    }

    /// Liveness problems at this moment (after faults): clients not done; no
    /// quorum operating in one view; a replica of that view below the chain
    /// height. A replica left alone in a view change to a *later* view (its
    /// NEW-VIEW timer fired just before the NEW-VIEW arrived) cannot safely
    /// return, and one replica alone must not drag the others along, so it
    /// only has to have caught up to the last checkpoint: it rejoins at the
    /// next view change.
    pub(super) fn liveness_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (i, c) in self.clients.iter().enumerate() {
            let busy = c.outstanding.is_some()
                || c.query.is_some()
                || c.retry.is_some()
                || !c.nonce_known
                || c.submitted < c.target;
            if busy {
                problems.push(format!(
                    "L1 liveness: client {i} finished {} of {} transfers",
                    c.results.len(),
                    c.target
                ));
            }
        }
        let max = self.checker.max_height();
        let k = self.scenario.checkpoint_interval;
        // (replica, its (height, view, changing-to) if up)
        type State = (usize, Option<(u64, u64, Option<u64>)>);
        let states: Vec<State> = self
            .nodes
            .iter()
            .take(self.scenario.replicas as usize)
            .enumerate()
            .filter(|(i, _)| !self.checker.byzantine.contains(&ReplicaId(*i as u32)))
            .map(|(i, n)| {
                (
                    i,
                    n.as_ref().map(|n| {
                        (
                            n.height(),
                            n.replica().view().0,
                            n.replica().changing_to().map(|v| v.0),
                        )
                    }),
                )
            })
            .collect();
        let Some(view) = self.operating_view() else {
            problems.push(format!("L2 view sync: no 2f+1 replicas share a view; (height, view, changing-to) {states:?}"));
            return problems;
        };
        for (i, st) in &states {
            let ok = match st {
                None => false,
                Some((h, v, None)) => *v == view.0 && *h == max,
                Some((h, _, Some(t))) => *t > view.0 && *h >= max / k * k,
            };
            if !ok {
                problems.push(format!(
                    "L4 catch-up: r{i} (height, view, changing-to) {st:?}; quorum view {}, chain height {max}",
                    view.0
                ));
            }
        }
        problems
    }

    /// Nodes of correct replicas (twin instances and Byzantine replicas
    /// excluded).
    pub(super) fn honest_nodes(&self) -> impl Iterator<Item = &Node<MemoryStore>> {
        self.nodes
            .iter()
            .take(self.scenario.replicas as usize)
            .enumerate()
            .filter(|(i, _)| !self.checker.byzantine.contains(&ReplicaId(*i as u32)))
            .filter_map(|(_, n)| n.as_ref())
    }

    pub(super) fn settled(&self) -> bool {
        self.liveness_problems().is_empty()
    }

    /// S5: each stored commit certificate has 2f+1 distinct valid signers
    /// over this seq and the digest of the stored batch.
    pub(super) fn check_certificates(&mut self) {
        let Some(node) = self.honest_nodes().next() else {
            return;
        };
        let quorum = self.genesis.cluster.quorum();
        let mut problems = Vec::new();
        for h in 1..=node.height() {
            let (Ok(Some(block)), Ok(Some(cert))) = (node.block(h), node.certificate(h)) else {
                problems.push(format!("S5 height {h}: block or certificate missing"));
                continue;
            };
            let committed = self.checker.chain(node.id()).get(h as usize - 1).copied();
            if committed != Some(block.header.hash()) {
                problems.push(format!(
                    "S3 height {h}: stored block differs from the committed one"
                ));
            }
            let digest = crate::tx::batch_digest(&block.batch_bytes);
            let signers: BTreeSet<ReplicaId> = cert
                .iter()
                .filter_map(|c| self.verifier.verify(c).ok())
                .filter(|c| c.seq == Seq(h) && c.digest == digest)
                .map(|c| c.signer())
                .collect();
            if signers.len() < quorum {
                problems.push(format!(
                    "S5 height {h}: certificate has {} valid signers",
                    signers.len()
                ));
            }
        }
        for p in problems {
            self.checker.report(p);
        }
    }
}
