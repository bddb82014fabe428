//! When a client may accept the result of its transaction
//! ([`ReplyQuorum`]), and when it may give a transaction up because
//! replicas refused it ([`RefusalQuorum`]).
//!
//! Sans-IO: they are fed the signed replies the client checked (which
//! replica signed each one is the caller's to verify), or the refusals it
//! received, and answer "decided" or "not yet". The real client
//! ([`super::Client::submit`]) and the simulator's clients (`sim::clients`)
//! use them alike, so both decide on the same rules.
//!
//! The rule (PBFT §4.1): a result is accepted once **f+1 replicas** sent
//! matching signed replies for this transaction — at least one of them is
//! correct, and a correct replica replies only after the transaction
//! executed. Replies for this client's nonce that name *another*
//! transaction say the nonce was used by it; f+1 alike decide that too.
//! A transfer signed with a nonce the client *learned* from the replicas
//! (after a restart) may have been given a nonce used already (a lagging
//! replica's answer): f+1 replies that it executed as a stale nonce then
//! mean "sign it again with a fresh nonce", not a result.

use super::proto::SubmitRejected;
use crate::consensus::messages::Reply;
use crate::crypto::{Digest, PublicKey};
use crate::tx::{Receipt, Transaction};
use crate::types::{ReplicaId, Seq};
use std::collections::BTreeMap;

/// What f+1 replies decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplyDecision {
    /// The transaction executed at height `seq` with `receipt`; `replicas`
    /// are those whose matching replies say so (in replica order).
    Committed {
        seq: Seq,
        receipt: Receipt,
        replicas: Vec<ReplicaId>,
    },
    /// f+1 replicas executed transaction `other` with this nonce.
    NonceConflict { other: Digest },
    /// The transaction was signed with a learned nonce and f+1 replicas
    /// executed it as a stale nonce: the nonce was used already, and the
    /// transfer is to be signed again with a fresh one.
    StaleLearnedNonce,
}

/// The signed replies to one transaction, at most one kept per replica
/// (a replica's later reply replaces its earlier one).
#[derive(Clone, Debug)]
pub struct ReplyQuorum {
    client: PublicKey,
    nonce: u64,
    tx_id: Digest,
    /// f+1.
    needed: usize,
    learned_nonce: bool,
    /// Replies that name this transaction: height and receipt.
    replies: BTreeMap<ReplicaId, (Seq, Receipt)>,
    /// Replies for this nonce that name another transaction.
    conflicts: BTreeMap<ReplicaId, Digest>,
}

impl ReplyQuorum {
    /// Replies to `tx`, decided by `needed` (f+1) alike. `learned_nonce`:
    /// its nonce came from the replicas' answers rather than the client's
    /// own count (see [`ReplyDecision::StaleLearnedNonce`]).
    pub fn new(tx: &Transaction, needed: usize, learned_nonce: bool) -> ReplyQuorum {
        ReplyQuorum {
            client: tx.from,
            nonce: tx.nonce,
            tx_id: tx.id(),
            needed,
            learned_nonce,
            replies: BTreeMap::new(),
            conflicts: BTreeMap::new(),
        }
    }

    /// Whether the transaction was signed with a learned nonce.
    pub fn learned_nonce(&self) -> bool {
        self.learned_nonce
    }

    /// Takes replica `replica`'s checked reply. Returns false (and keeps
    /// nothing) if the reply is for another client or nonce.
    pub fn add(&mut self, replica: ReplicaId, reply: &Reply) -> bool {
        if reply.client != self.client || reply.nonce != self.nonce {
            return false;
        }
        if reply.tx_id != self.tx_id {
            self.conflicts.insert(replica, reply.tx_id);
        } else {
            self.replies.insert(replica, (reply.seq, reply.receipt));
        }
        true
    }

    /// The replicas of each distinct result, by (height, receipt code).
    fn groups(&self) -> BTreeMap<(u64, u8), Vec<ReplicaId>> {
        let mut groups: BTreeMap<(u64, u8), Vec<ReplicaId>> = BTreeMap::new();
        for (r, (seq, receipt)) in &self.replies {
            groups.entry((seq.0, receipt.code())).or_default().push(*r);
        }
        groups
    }

    /// The size of the largest group of matching replies.
    pub fn best(&self) -> usize {
        self.groups().values().map(Vec::len).max().unwrap_or(0)
    }

    /// The decision, once f+1 replies agree: a result (the lowest by
    /// height and receipt code, should two groups have f+1), else a nonce
    /// used by another transaction; `None` while neither has f+1.
    pub fn decision(&self) -> Option<ReplyDecision> {
        if let Some(((seq, code), replicas)) = self
            .groups()
            .into_iter()
            .find(|(_, v)| v.len() >= self.needed)
        {
            let receipt = Receipt::from_code(code).expect("a receipt's own code");
            if self.learned_nonce && receipt == Receipt::StaleNonce {
                return Some(ReplyDecision::StaleLearnedNonce);
            }
            return Some(ReplyDecision::Committed {
                seq: Seq(seq),
                receipt,
                replicas,
            });
        }
        let mut conflicts: BTreeMap<Digest, usize> = BTreeMap::new();
        for other in self.conflicts.values() {
            *conflicts.entry(*other).or_default() += 1;
        }
        conflicts
            .into_iter()
            .find(|(_, n)| *n >= self.needed)
            .map(|(other, _)| ReplyDecision::NonceConflict { other })
    }
}

/// A final refusal: a reason a replica gives for never ordering a
/// transaction. `alike` says which reasons count together towards f+1.
pub trait Refusal: Copy {
    /// Whether two replicas refused for the same reason.
    fn alike(&self, other: &Self) -> bool;
}

/// The simulator's replicas refuse with the receipt the transfer would
/// fail with: the same receipt is the same reason.
impl Refusal for Receipt {
    fn alike(&self, other: &Self) -> bool {
        self == other
    }
}

/// The real replicas' refusals. Two stale-nonce refusals are alike
/// whatever last nonce each replica saw (replicas at different heights
/// may name different ones); two would-fail refusals are alike only with
/// the same receipt.
impl Refusal for SubmitRejected {
    fn alike(&self, other: &Self) -> bool {
        match (self, other) {
            (SubmitRejected::WouldFail(x), SubmitRejected::WouldFail(y)) => x == y,
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }
}

/// The replicas that refused one transaction, at most one refusal kept per
/// replica (a replica's later refusal replaces its earlier one).
///
/// The rule: a client gives a transaction up once **f+1 replicas** refused
/// it alike. At least one of them is correct, and a correct replica refuses
/// only what it will never order (the transfer would fail at its height, or
/// its signature or nonce is bad). Fewer than f+1 may all be Byzantine, so
/// the client keeps waiting for replies.
#[derive(Clone, Debug)]
pub struct RefusalQuorum<R> {
    /// f+1.
    needed: usize,
    /// In the order the refusals came; a replica appears once.
    refusals: Vec<(ReplicaId, R)>,
}

impl<R: Refusal> RefusalQuorum<R> {
    /// Refusals decided by `needed` (f+1) alike.
    pub fn new(needed: usize) -> RefusalQuorum<R> {
        RefusalQuorum {
            needed,
            refusals: Vec::new(),
        }
    }

    /// Takes replica `replica`'s refusal.
    pub fn add(&mut self, replica: ReplicaId, reason: R) {
        match self.refusals.iter_mut().find(|(r, _)| *r == replica) {
            Some(slot) => slot.1 = reason,
            None => self.refusals.push((replica, reason)),
        }
    }

    /// The reason f+1 replicas refused alike (the first such to come, with
    /// how many gave it), or `None` while no reason has f+1.
    pub fn decision(&self) -> Option<(R, usize)> {
        self.refusals.iter().find_map(|(_, reason)| {
            let count = self
                .refusals
                .iter()
                .filter(|(_, other)| other.alike(reason))
                .count();
            (count >= self.needed).then_some((*reason, count))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{KeyPair, NetworkId};
    use crate::types::View;

    const F_PLUS_1: usize = 2;

    fn tx(nonce: u64, amount: u64) -> Transaction {
        let from = KeyPair::from_label("quorum-client");
        let to = KeyPair::from_label("quorum-payee").public();
        let network = NetworkId(Digest([7; 32]));
        Transaction::transfer(network, &from, to, amount, nonce)
    }

    fn reply(tx: &Transaction, seq: u64, receipt: Receipt) -> Reply {
        Reply {
            view: View(0),
            client: tx.from,
            nonce: tx.nonce,
            tx_id: tx.id(),
            seq: Seq(seq),
            receipt,
        }
    }

    #[test]
    fn f_plus_1_matching_replies_decide() {
        let t = tx(5, 10);
        let mut q = ReplyQuorum::new(&t, F_PLUS_1, false);
        assert!(q.add(ReplicaId(2), &reply(&t, 3, Receipt::Ok)));
        assert_eq!(q.decision(), None);
        // A different result from another replica does not match.
        assert!(q.add(ReplicaId(0), &reply(&t, 4, Receipt::Ok)));
        assert_eq!((q.decision(), q.best()), (None, 1));
        assert!(q.add(ReplicaId(1), &reply(&t, 3, Receipt::Ok)));
        assert_eq!(
            q.decision(),
            Some(ReplyDecision::Committed {
                seq: Seq(3),
                receipt: Receipt::Ok,
                replicas: vec![ReplicaId(1), ReplicaId(2)],
            })
        );
    }

    #[test]
    fn one_replica_counts_once() {
        let t = tx(5, 10);
        let mut q = ReplyQuorum::new(&t, F_PLUS_1, false);
        q.add(ReplicaId(1), &reply(&t, 3, Receipt::Ok));
        q.add(ReplicaId(1), &reply(&t, 3, Receipt::Ok));
        assert_eq!((q.decision(), q.best()), (None, 1));
        // Its later reply replaces the earlier one.
        q.add(ReplicaId(1), &reply(&t, 4, Receipt::Ok));
        q.add(ReplicaId(3), &reply(&t, 3, Receipt::Ok));
        assert_eq!(q.decision(), None);
    }

    #[test]
    fn replies_for_another_client_or_nonce_are_not_kept() {
        let t = tx(5, 10);
        let mut q = ReplyQuorum::new(&t, F_PLUS_1, false);
        let mut other_nonce = reply(&t, 3, Receipt::Ok);
        other_nonce.nonce = 6;
        let mut other_client = reply(&t, 3, Receipt::Ok);
        other_client.client = KeyPair::from_label("someone else").public();
        for (r, rep) in [(0, other_nonce), (1, other_client)] {
            assert!(!q.add(ReplicaId(r), &rep));
        }
        assert_eq!((q.decision(), q.best()), (None, 0));
    }

    #[test]
    fn f_plus_1_replies_naming_another_transaction_are_a_conflict() {
        let t = tx(5, 10);
        let other = tx(5, 11);
        let mut q = ReplyQuorum::new(&t, F_PLUS_1, false);
        q.add(ReplicaId(0), &reply(&other, 2, Receipt::Ok));
        q.add(ReplicaId(1), &reply(&t, 3, Receipt::StaleNonce));
        assert_eq!(q.decision(), None);
        q.add(ReplicaId(3), &reply(&other, 2, Receipt::Ok));
        assert_eq!(
            q.decision(),
            Some(ReplyDecision::NonceConflict { other: other.id() })
        );
    }

    /// A stale nonce is a result for a nonce the client counted itself,
    /// and "sign again" for one it learned.
    #[test]
    fn a_stale_learned_nonce_is_not_a_result() {
        let t = tx(5, 10);
        for (learned, expected) in [
            (
                false,
                ReplyDecision::Committed {
                    seq: Seq(9),
                    receipt: Receipt::StaleNonce,
                    replicas: vec![ReplicaId(0), ReplicaId(2)],
                },
            ),
            (true, ReplyDecision::StaleLearnedNonce),
        ] {
            let mut q = ReplyQuorum::new(&t, F_PLUS_1, learned);
            assert_eq!(q.learned_nonce(), learned);
            q.add(ReplicaId(0), &reply(&t, 9, Receipt::StaleNonce));
            q.add(ReplicaId(2), &reply(&t, 9, Receipt::StaleNonce));
            assert_eq!(q.decision(), Some(expected));
        }
        // Any other receipt of a learned nonce is a result.
        let mut q = ReplyQuorum::new(&t, F_PLUS_1, true);
        q.add(ReplicaId(0), &reply(&t, 9, Receipt::InsufficientFunds));
        q.add(ReplicaId(1), &reply(&t, 9, Receipt::InsufficientFunds));
        assert!(matches!(
            q.decision(),
            Some(ReplyDecision::Committed {
                receipt: Receipt::InsufficientFunds,
                ..
            })
        ));
    }

    #[test]
    fn f_plus_1_alike_refusals_decide() {
        let mut q = RefusalQuorum::new(F_PLUS_1);
        q.add(ReplicaId(0), Receipt::InsufficientFunds);
        assert_eq!(q.decision(), None);
        // Another reason does not count with it.
        q.add(ReplicaId(1), Receipt::StaleNonce);
        assert_eq!(q.decision(), None);
        q.add(ReplicaId(3), Receipt::InsufficientFunds);
        assert_eq!(q.decision(), Some((Receipt::InsufficientFunds, 2)));
    }

    #[test]
    fn one_replica_refuses_once() {
        let mut q = RefusalQuorum::new(F_PLUS_1);
        q.add(ReplicaId(2), Receipt::InsufficientFunds);
        q.add(ReplicaId(2), Receipt::InsufficientFunds);
        assert_eq!(q.decision(), None);
        // Its later refusal replaces the earlier one.
        q.add(ReplicaId(2), Receipt::StaleNonce);
        q.add(ReplicaId(0), Receipt::InsufficientFunds);
        assert_eq!(q.decision(), None);
        q.add(ReplicaId(1), Receipt::StaleNonce);
        assert_eq!(q.decision(), Some((Receipt::StaleNonce, 2)));
    }

    #[test]
    fn stale_nonce_refusals_are_alike_whatever_nonce_they_name() {
        let mut q = RefusalQuorum::new(F_PLUS_1);
        q.add(
            ReplicaId(0),
            SubmitRejected::StaleNonce { account_nonce: 4 },
        );
        q.add(
            ReplicaId(1),
            SubmitRejected::WouldFail(Receipt::InsufficientFunds),
        );
        assert_eq!(q.decision(), None);
        q.add(
            ReplicaId(2),
            SubmitRejected::StaleNonce { account_nonce: 6 },
        );
        assert_eq!(
            q.decision(),
            Some((SubmitRejected::StaleNonce { account_nonce: 4 }, 2))
        );
        // Would-fail refusals are alike only with the same receipt.
        let mut q = RefusalQuorum::new(F_PLUS_1);
        q.add(
            ReplicaId(0),
            SubmitRejected::WouldFail(Receipt::InsufficientFunds),
        );
        q.add(ReplicaId(1), SubmitRejected::WouldFail(Receipt::StaleNonce));
        assert_eq!(q.decision(), None);
    }
}
