//! Replies to clients: each client's last reply, cached in memory and
//! bounded ([`ReplyCache`]), and the answers to resent requests that
//! already executed — from the cache, or signed afresh from the
//! transaction index in the replica's store, a bounded number per client.

use super::{Node, NodeError, Outgoing};
use crate::consensus::messages::{Reply, ReplyProof};
use crate::crypto::PublicKey;
use crate::storage::Store;
use crate::types::{Seq, View};
use std::collections::BTreeMap;

/// Most clients whose last reply is kept. A resend beyond it is answered
/// from the transaction index instead (signed afresh), so the bound costs
/// only a signature for clients idle for a long time.
pub const REPLY_CACHE_MAX: usize = 65_536;

/// Each client's last reply, bounded by [`REPLY_CACHE_MAX`] entries (each
/// at most a reply and its merkle path: ≈ 1.3 KB): the client whose
/// latest reply is oldest is forgotten first.
#[derive(Default)]
pub(super) struct ReplyCache {
    /// Client → (insertion number, reply, proof).
    map: BTreeMap<PublicKey, (u64, Reply, ReplyProof)>,
    /// Insertion number → client; an entry is live while `map` agrees.
    order: BTreeMap<u64, PublicKey>,
    next: u64,
}

impl ReplyCache {
    pub(super) fn insert(&mut self, reply: Reply, proof: ReplyProof) {
        let n = self.next;
        self.next += 1;
        if let Some((old, ..)) = self.map.insert(reply.client, (n, reply, proof)) {
            self.order.remove(&old);
        }
        self.order.insert(n, reply.client);
        while self.map.len() > REPLY_CACHE_MAX {
            let Some((_, client)) = self.order.pop_first() else {
                break;
            };
            self.map.remove(&client);
        }
    }

    /// The cached reply for the client's `nonce`: for another transaction
    /// with that nonce too (its reply names the one that executed, so the
    /// client learns of the conflict).
    pub(super) fn get(&self, client: &PublicKey, nonce: u64) -> Option<(Reply, ReplyProof)> {
        self.map
            .get(client)
            .filter(|(_, r, _)| r.nonce == nonce)
            .map(|(_, r, p)| (*r, p.clone()))
    }

    pub(super) fn len(&self) -> usize {
        self.map.len()
    }
}

impl<S: Store> Node<S> {
    /// Whether the request's nonce already executed; if so, its reply (if
    /// any, see [`Node::already_executed`]) goes to the client again.
    pub(super) fn answer_executed(
        &mut self,
        tx: &crate::tx::Transaction,
    ) -> Result<bool, NodeError> {
        let Some(reply) = self.already_executed(tx)? else {
            return Ok(false);
        };
        if let Some((reply, proof)) = reply {
            self.push_out(Outgoing::ToClient {
                client: tx.from,
                reply,
                proof,
            });
        }
        Ok(true)
    }

    /// `Some(reply or None)` if the request's nonce already executed: the
    /// cached reply, or one signed afresh from the transaction index (the
    /// cache is in memory: after a restart, a client whose replies were lost
    /// would otherwise never hear f+1 of them again — a silent-primary seed
    /// left a client resending for ever), or `None` for a nonce that was
    /// superseded and never executed as this transaction.
    fn already_executed(
        &mut self,
        tx: &crate::tx::Transaction,
    ) -> Result<Option<Option<(Reply, ReplyProof)>>, NodeError> {
        let Some(account) = self.bank.account(&tx.from) else {
            return Ok(None);
        };
        if tx.nonce > account.nonce {
            return Ok(None);
        }
        let id = tx.id();
        let cached = self.reply_cache.get(&tx.from, tx.nonce);
        if cached.is_some() {
            return Ok(Some(cached));
        }
        // Issue 24, defect 5: no forced sync (before, every uncached resend
        // flushed the group: a sync each) and a bounded rate of signatures.
        // The index holds every block written, synced or not; a block still
        // in the unwritten group has its replies in the cache, unless 65,536
        // clients were answered since — then the client's next resend, after
        // the group is written, is answered.
        if !self.replay_pacer.allow(tx.from, self.last_now) {
            return Ok(Some(None));
        }
        let Ok(Some(loc)) = self.store.tx(&id) else {
            return Ok(Some(None));
        };
        // Signed with the group's other such replies of its block, one
        // signature for all (`sign_replays`).
        if !self.replays.iter().any(|r| r.tx_id == id) {
            self.replays.push(Reply {
                view: self.replica.view(),
                client: tx.from,
                nonce: tx.nonce,
                tx_id: id,
                seq: Seq(loc.height),
                receipt: loc.receipt,
            });
        }
        Ok(Some(None))
    }

    /// Signs the group's replies to resent, executed requests: one
    /// signature per block they come from (issue 24, defect 5: before, one
    /// per resend), and sends them. A client's latest reply is cached, so
    /// its later resends cost nothing.
    pub(super) fn sign_replays(&mut self) {
        let mut by_block: BTreeMap<(View, Seq), Vec<Reply>> = BTreeMap::new();
        for r in std::mem::take(&mut self.replays) {
            by_block.entry((r.view, r.seq)).or_default().push(r);
        }
        for replies in by_block.into_values() {
            let proofs = self.sign_replies(&replies);
            for (reply, proof) in replies.into_iter().zip(proofs) {
                if self
                    .bank
                    .account(&reply.client)
                    .is_some_and(|a| a.nonce == reply.nonce)
                {
                    self.reply_cache.insert(reply, proof.clone());
                }
                self.push_out(Outgoing::ToClient {
                    client: reply.client,
                    reply,
                    proof,
                });
            }
        }
    }

    /// One signature over `replies` (all of one block, same view and seq):
    /// a proof per reply, in order. No replies, no signature.
    pub(super) fn sign_replies(&self, replies: &[Reply]) -> Vec<ReplyProof> {
        let Some(first) = replies.first() else {
            return Vec::new();
        };
        ReplyProof::sign_block(
            &self.key,
            self.replica.network(),
            self.me,
            first.view,
            first.seq,
            replies,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{Digest, KeyPair, NetworkId};
    use crate::tx::Receipt;
    use crate::types::ReplicaId;

    fn reply(client: u32, nonce: u64) -> Reply {
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(&client.to_le_bytes());
        Reply {
            view: View(0),
            client: PublicKey(key),
            nonce,
            tx_id: Digest([nonce as u8; 32]),
            seq: Seq(1),
            receipt: Receipt::Ok,
        }
    }

    /// Issue 17, defect 9: the reply cache holds at most `REPLY_CACHE_MAX`
    /// clients; the one whose latest reply is oldest goes first, and a
    /// client answered again moves to the back.
    #[test]
    fn the_reply_cache_is_bounded_and_forgets_the_oldest_client() {
        let key = KeyPair::from_label("reply-cache");
        let proof = ReplyProof::sign_block(
            &key,
            NetworkId(Digest([1; 32])),
            ReplicaId(0),
            View(0),
            Seq(1),
            &[reply(0, 1)],
        )
        .pop()
        .expect("one proof");
        let mut cache = ReplyCache::default();
        for c in 0..REPLY_CACHE_MAX as u32 {
            cache.insert(reply(c, 1), proof.clone());
        }
        assert_eq!(cache.len(), REPLY_CACHE_MAX);
        // Client 0 is answered again (nonce 2): it is now the newest.
        cache.insert(reply(0, 2), proof.clone());
        assert_eq!(cache.len(), REPLY_CACHE_MAX, "one entry per client");
        for c in 0..10u32 {
            cache.insert(reply(REPLY_CACHE_MAX as u32 + c, 1), proof.clone());
        }
        assert_eq!(cache.len(), REPLY_CACHE_MAX);
        let get = |c: u32, nonce: u64| cache.get(&reply(c, nonce).client, nonce).is_some();
        assert!(get(0, 2), "refreshed, kept");
        assert!(!get(0, 1), "only the latest reply per client");
        assert!((1..11).all(|c| !get(c, 1)), "the ten oldest went");
        assert!(get(11, 1) && get(REPLY_CACHE_MAX as u32 + 9, 1));
        let (cached, _) = cache.get(&reply(11, 1).client, 1).expect("kept");
        assert_eq!(cached, reply(11, 1));
    }
}
