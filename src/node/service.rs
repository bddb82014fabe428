//! The replica's side of the client protocol (`client::proto`): queries are
//! answered from the node's state at once; a submitted transaction is handed
//! to the node and its client waits until the node emits the reply (with the
//! proof that the replica signed it).
//!
//! Waiting submissions are keyed by `(client, nonce)` — the key the reply
//! cache and the core's pending set use — and bounded in number and time:
//!
//! * the node emits `ToClient` for `(client, nonce)` → every waiter on that
//!   key gets the reply (the client checks the transaction id; a different
//!   transaction with the same nonce is a conflict it reports), and waiters
//!   on *lower* nonces of that client are answered "stale nonce": their
//!   nonce was overtaken, so they will execute as stale without a reply;
//! * a nonce the account already used, with no reply cached for it, is
//!   answered "stale nonce" right after submission;
//! * `submit_timeout` passes → "timeout"; at most `waiters_max` waiters, a
//!   submission beyond that is answered "busy".

use super::{Node, NodeError};
use crate::client::proto::{
    BalanceInfo, BlockInfo, ClientRequest, ClientResponse, StatusInfo, SubmitRejected, TxInfo,
};
use crate::consensus::messages::{Reply, ReplyProof};
use crate::crypto::{merkle, Digest, NetworkId, PublicKey};
use crate::ledger;
use crate::net;
use crate::storage::Store;
use crate::tx::{Receipt, Transaction, VerifiedTx};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;
use tokio::time::Instant;
use tracing::debug;

type Key = (PublicKey, u64);

struct Waiter {
    tx_id: Digest,
    respond: net::Responder,
    deadline: Instant,
}

/// Counters of the client service.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceStats {
    pub requests: u64,
    pub malformed: u64,
    pub submitted: u64,
    pub replied: u64,
    pub rejected: u64,
    /// Of `rejected`: answered "busy" (too many waiting, or the node
    /// deferred the transaction).
    pub busy: u64,
    pub timed_out: u64,
    /// Submissions whose signature the node had checked already (it saw
    /// them in a PRE-PREPARE): admitted without a second check.
    pub checked_before: u64,
}

/// Submissions awaiting execution, and the query answers.
pub struct ClientService {
    waiters: BTreeMap<Key, Vec<Waiter>>,
    /// Expiry order; all waiters share one timeout, so this is FIFO.
    expiries: VecDeque<(Instant, Key)>,
    count: usize,
    waiters_max: usize,
    submit_timeout: Duration,
    /// Submissions received since the last [`ClientService::admit`], their
    /// signatures not checked yet (checked together, in one batch).
    unchecked: Vec<(Transaction, net::Responder)>,
    stats: ServiceStats,
}

impl ClientService {
    pub fn new(submit_timeout: Duration, waiters_max: usize) -> ClientService {
        ClientService {
            waiters: BTreeMap::new(),
            expiries: VecDeque::new(),
            count: 0,
            waiters_max,
            submit_timeout,
            unchecked: Vec::new(),
            stats: ServiceStats::default(),
        }
    }

    pub fn stats(&self) -> ServiceStats {
        self.stats
    }

    /// Submissions currently waiting.
    pub fn waiting(&self) -> usize {
        self.count
    }

    /// The client endpoint's answer on sight ([`net::Screen`]): a frame that
    /// does not decode is answered "malformed" without reaching the node or
    /// taking a slot of the replica's capacity.
    pub fn screen(frame: &[u8]) -> Option<Vec<u8>> {
        ClientRequest::from_frame(frame)
            .err()
            .map(|_| ClientResponse::Malformed.to_frame())
    }

    /// Decodes and answers one request, or queues a submission for
    /// [`ClientService::admit`]. A query's answer passes through `answer`
    /// (the identity but for a Byzantine replica's strategy).
    pub fn on_request<S: Store>(
        &mut self,
        node: &Node<S>,
        request: net::ClientRequest,
        connected_peers: impl FnOnce() -> u32,
        undecodable_frames: u64,
        answer: impl FnOnce(&ClientRequest, ClientResponse) -> ClientResponse,
    ) -> Result<(), NodeError> {
        self.stats.requests += 1;
        let net::ClientRequest { frame, respond, .. } = request;
        let decoded = match ClientRequest::from_frame(&frame) {
            Ok(r) => r,
            Err(e) => {
                self.stats.malformed += 1;
                debug!(target: "pbft::client", reason = %e, "malformed client request");
                let _ = respond.send(ClientResponse::Malformed.to_frame());
                return Ok(());
            }
        };
        let query = match decoded {
            ClientRequest::Submit(tx) => {
                self.stats.submitted += 1;
                if self.count + self.unchecked.len() >= self.waiters_max {
                    self.reject(respond, SubmitRejected::Busy);
                } else {
                    self.unchecked.push((tx, respond));
                }
                return Ok(());
            }
            query => query,
        };
        let honest = match &query {
            ClientRequest::Submit(_) => unreachable!("submissions are queued above"),
            ClientRequest::Balance(account) => {
                let a = node.account(account);
                ClientResponse::Balance(BalanceInfo {
                    account: *account,
                    exists: a.is_some(),
                    balance: a.map_or(0, |a| a.balance),
                    nonce: a.map_or(0, |a| a.nonce),
                    height: node.height(),
                })
            }
            ClientRequest::Tx(id) => ClientResponse::Tx(tx_info(node, id)?),
            ClientRequest::Block(height) => ClientResponse::Block(block_info(node, *height)?),
            ClientRequest::Status => {
                ClientResponse::Status(status(node, connected_peers(), undecodable_frames))
            }
        };
        let _ = respond.send(answer(&query, honest).to_frame());
        Ok(())
    }

    /// Checks the signatures of the queued submissions in one batch
    /// (`tx::VerifiedTx::check_all`), answers the bad ones, registers a
    /// waiter for each good one and returns them for the node (in arrival
    /// order). A submission `known` vouches for (exactly that transaction,
    /// signature included, was checked before) is not checked again. The
    /// runtime then feeds them to the node and calls
    /// [`ClientService::after_submit`] for each after the flush.
    pub fn admit(
        &mut self,
        network: NetworkId,
        known: impl Fn(&Transaction) -> Option<VerifiedTx>,
    ) -> Vec<VerifiedTx> {
        if self.unchecked.is_empty() {
            return Vec::new();
        }
        // `Some` = vouched for; `None` = the next result of the batch check.
        let mut vouched: Vec<Option<VerifiedTx>> = Vec::new();
        let mut fresh = Vec::new();
        let mut responders = Vec::with_capacity(self.unchecked.len());
        for (tx, respond) in std::mem::take(&mut self.unchecked) {
            responders.push(respond);
            let known = known(&tx);
            if known.is_some() {
                self.stats.checked_before += 1;
            } else {
                fresh.push(tx);
            }
            vouched.push(known);
        }
        let mut fresh = VerifiedTx::check_all(fresh, network).into_iter();
        let mut admitted = Vec::with_capacity(responders.len());
        for (vouched, respond) in vouched.into_iter().zip(responders) {
            let checked = vouched.or_else(|| fresh.next().flatten());
            let tx = match checked {
                Some(tx) => tx,
                None => {
                    self.reject(respond, SubmitRejected::BadSignature);
                    continue;
                }
            };
            let key = (tx.from, tx.nonce);
            let deadline = Instant::now() + self.submit_timeout;
            self.waiters.entry(key).or_default().push(Waiter {
                tx_id: tx.id(),
                respond,
                deadline,
            });
            self.count += 1;
            self.expiries.push_back((deadline, key));
            admitted.push(tx);
        }
        self.compact_expiries();
        admitted
    }

    /// Called after the node handled a submission and its outbox was
    /// drained: a nonce the account already used, with no cached reply
    /// delivered, will never be answered by execution.
    pub fn after_submit<S: Store>(&mut self, node: &Node<S>, key: Key) {
        if !self.waiters.contains_key(&key) {
            return;
        }
        if let Some(account) = node.account(&key.0).filter(|a| key.1 <= a.nonce) {
            self.fail(
                &key,
                SubmitRejected::StaleNonce {
                    account_nonce: account.nonce,
                },
            );
        }
    }

    /// The node refuses the submission (`Node::refusal`): it would execute
    /// with `receipt`, a failure, so it is not ordered; its waiters learn
    /// why.
    pub fn refused(&mut self, key: Key, receipt: Receipt) {
        let reason = match receipt {
            Receipt::UnknownAccount => SubmitRejected::UnknownAccount,
            other => SubmitRejected::WouldFail(other),
        };
        self.fail(&key, reason);
    }

    /// The node turns the submission away for now (`Node::deferral`): its
    /// waiters hear "busy" and may resend.
    pub fn busy(&mut self, key: Key) {
        self.fail(&key, SubmitRejected::Busy);
    }

    /// The node emitted a reply (and its proof) for `client`.
    pub fn on_reply(&mut self, client: PublicKey, r: Reply, proof: ReplyProof) {
        let key = (client, r.nonce);
        if let Some(waiters) = self.waiters.remove(&key) {
            self.count -= waiters.len();
            let frame = ClientResponse::Reply(proof).to_frame();
            for w in waiters {
                if w.tx_id != r.tx_id {
                    debug!(target: "pbft::client", client = ?client, nonce = r.nonce,
                        "nonce executed by a different transaction");
                }
                self.stats.replied += 1;
                let _ = w.respond.send(frame.clone());
            }
        }
        // Lower nonces of this client were overtaken: they execute as stale.
        let overtaken: Vec<Key> = self
            .waiters
            .range((client, 0)..(client, r.nonce))
            .map(|(k, _)| *k)
            .collect();
        for key in overtaken {
            self.fail(
                &key,
                SubmitRejected::StaleNonce {
                    account_nonce: r.nonce,
                },
            );
        }
    }

    /// Answers the waiters whose time is up.
    pub fn expire(&mut self, now: Instant) {
        while let Some((at, key)) = self.expiries.front().copied() {
            if at > now {
                break;
            }
            self.expiries.pop_front();
            let Some(list) = self.waiters.get_mut(&key) else {
                continue;
            };
            let (due, keep): (Vec<Waiter>, Vec<Waiter>) = std::mem::take(list)
                .into_iter()
                .partition(|w| w.deadline <= now);
            if keep.is_empty() {
                self.waiters.remove(&key);
            } else {
                *list = keep;
            }
            self.count -= due.len();
            for w in due {
                self.stats.timed_out += 1;
                self.reject(w.respond, SubmitRejected::Timeout);
            }
        }
    }

    /// Keeps the expiry queue proportional to the waiters: entries of
    /// waiters already answered are dropped once they outnumber the bound.
    fn compact_expiries(&mut self) {
        if self.expiries.len() <= 2 * self.waiters_max + 16 {
            return;
        }
        let waiters = &self.waiters;
        self.expiries.retain(|(at, key)| {
            waiters
                .get(key)
                .is_some_and(|list| list.iter().any(|w| w.deadline == *at))
        });
    }

    pub fn next_expiry(&self) -> Option<Instant> {
        self.expiries.front().map(|(at, _)| *at)
    }

    /// Answers every waiter: the replica is shutting down.
    pub fn shutdown(&mut self) {
        for (_, respond) in std::mem::take(&mut self.unchecked) {
            self.reject(respond, SubmitRejected::ShuttingDown);
        }
        let keys: Vec<Key> = self.waiters.keys().copied().collect();
        for key in keys {
            self.fail(&key, SubmitRejected::ShuttingDown);
        }
        self.expiries.clear();
    }

    fn fail(&mut self, key: &Key, reason: SubmitRejected) {
        if let Some(waiters) = self.waiters.remove(key) {
            self.count -= waiters.len();
            for w in waiters {
                self.reject(w.respond, reason);
            }
        }
    }

    fn reject(&mut self, respond: net::Responder, reason: SubmitRejected) {
        self.stats.rejected += 1;
        if reason == SubmitRejected::Busy {
            self.stats.busy += 1;
        }
        let _ = respond.send(ClientResponse::Rejected(reason).to_frame());
    }
}

fn tx_info<S: Store>(node: &Node<S>, id: &Digest) -> Result<Option<TxInfo>, NodeError> {
    let Some(loc) = node.tx(id)? else {
        return Ok(None);
    };
    let Some(block) = node.block(loc.height)? else {
        return Ok(None);
    };
    let batch = block.batch()?;
    let Some(tx) = batch.txs.get(loc.index as usize) else {
        return Err(crate::storage::StorageError::Corrupt(format!(
            "transaction index points past block {}",
            loc.height
        ))
        .into());
    };
    // The inclusion proof: the path from the transaction's leaf to the
    // header's tx_root (the leaves are rebuilt from the stored batch; one
    // path, not all of them).
    let leaves: Vec<Digest> = batch.txs.iter().map(ledger::tx_leaf).collect();
    let path = merkle::path(&leaves, loc.index as usize).unwrap_or_default();
    Ok(Some(TxInfo {
        tx_id: *id,
        height: loc.height,
        index: loc.index,
        receipt: loc.receipt,
        from: tx.from,
        to: tx.to,
        amount: tx.amount,
        nonce: tx.nonce,
        signature: tx.signature,
        block_hash: block.header.hash(),
        tx_root: block.header.tx_root,
        tx_count: leaves.len() as u32,
        path,
    }))
}

fn block_info<S: Store>(node: &Node<S>, height: u64) -> Result<Option<BlockInfo>, NodeError> {
    if height == 0 || height > node.height() {
        return Ok(None);
    }
    let Some(block) = node.block(height)? else {
        return Ok(None);
    };
    let tx_count = block.batch()?.txs.len() as u32;
    let signers: BTreeSet<u32> = node
        .certificate(height)?
        .unwrap_or_default()
        .iter()
        .map(|c| c.signer.0)
        .collect();
    Ok(Some(BlockInfo {
        height,
        block_hash: block.header.hash(),
        parent_hash: block.header.parent_hash,
        batch_digest: block.header.batch_digest,
        tx_root: block.header.tx_root,
        state_root: block.header.state_root,
        timestamp_ms: block.header.timestamp_ms,
        tx_count,
        commit_signers: signers.len() as u32,
        signers: signers.into_iter().collect(),
    }))
}

fn status<S: Store>(node: &Node<S>, connected_peers: u32, undecodable_frames: u64) -> StatusInfo {
    let r = node.replica();
    let stats = r.stats();
    StatusInfo {
        replica: node.id().0,
        view: r.view().0,
        changing_to: r.changing_to().map(|v| v.0),
        primary: r.primary().0,
        height: node.height(),
        block_hash: node.tip().block_hash,
        stable_checkpoint: r.low_watermark().0,
        pending_requests: r.pending_requests() as u64,
        connected_peers,
        view_changes_started: stats.view_changes_started,
        new_views_entered: stats.new_views_entered,
        undecodable_frames,
        ignored: stats
            .ignored
            .iter()
            .map(|(reason, n)| (reason.to_string(), *n))
            .collect(),
    }
}
