//! [`Client`]: ask every replica at once, combine the answers.

use super::proto::{
    BalanceInfo, BlockInfo, ClientRequest, ClientResponse, StatusInfo, SubmitRejected, TxInfo,
};
use super::quorum::{RefusalQuorum, ReplyDecision, ReplyQuorum};
use crate::consensus::messages::{Reply, ReplyChecker, ReplyProof};
use crate::crypto::{Digest, KeyPair, PublicKey};
use crate::genesis::Genesis;
use crate::net::{ClientConnector, NetError};
use crate::tx::{Receipt, Transaction};
use crate::types::ReplicaId;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;
use tokio::time::Instant;

/// Longest a single dial may take (within the operation's timeout).
const DIAL_TIMEOUT_MAX: Duration = Duration::from_secs(2);
/// First and largest pause before re-asking a replica that failed.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(1);
/// Longest `close` waits for the close frames to be sent.
const CLOSE_WAIT: Duration = Duration::from_millis(200);
/// After f+1 query answers are in, how long to wait for the others.
const QUERY_GRACE: Duration = Duration::from_millis(300);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The client endpoint could not be created.
    #[error("cannot start the client endpoint: {0}")]
    Setup(NetError),
    /// No replica answered at all.
    #[error("no replica reachable within {timeout_ms} ms ({detail})")]
    Unreachable { timeout_ms: u64, detail: String },
    /// Some replicas answered, but not f+1 in agreement, before the timeout.
    #[error("no {needed} matching answers within {timeout_ms} ms ({detail})")]
    Timeout {
        needed: usize,
        timeout_ms: u64,
        detail: String,
    },
    /// f+1 replicas refused the transaction for the same reason.
    #[error("transaction rejected by {count} replicas: {reason}")]
    Rejected {
        reason: SubmitRejected,
        count: usize,
    },
    /// f+1 replicas executed a *different* transaction with this nonce.
    #[error("nonce {nonce} was already used by transaction {other}")]
    NonceConflict { nonce: u64, other: Digest },
    /// The answers cannot reach f+1 agreement any more.
    #[error("replicas disagree: {0}")]
    Disagree(String),
}

impl ClientError {
    /// The process exit code (see [`crate::exit`]).
    pub fn exit_code(&self) -> i32 {
        use crate::exit;
        match self {
            ClientError::Unreachable { .. } | ClientError::Timeout { .. } => exit::TIMEOUT,
            ClientError::Rejected { .. } | ClientError::NonceConflict { .. } => exit::REJECTED,
            ClientError::Setup(_) | ClientError::Disagree(_) => exit::FAILURE,
        }
    }
}

/// A transaction that f+1 replicas confirmed executed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    pub tx_id: Digest,
    pub nonce: u64,
    /// Height of the block holding it.
    pub height: u64,
    pub receipt: Receipt,
    /// Replicas whose matching signed replies were accepted.
    pub replicas: Vec<u32>,
    pub latency: Duration,
}

/// One replica's answer to a query, or why there is none.
pub type ReplicaAnswer<T> = (usize, Result<T, String>);

/// The answers of every replica to one query.
#[derive(Clone, Debug)]
pub struct Gathered<T> {
    pub answers: Vec<ReplicaAnswer<T>>,
    /// f+1.
    pub needed: usize,
}

/// A value and how many replicas gave it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryAnswer<T> {
    pub value: T,
    pub replicas: usize,
}

impl<T> Gathered<T> {
    pub fn ok(&self) -> impl Iterator<Item = (usize, &T)> {
        self.answers
            .iter()
            .filter_map(|(i, a)| a.as_ref().ok().map(|v| (*i, v)))
    }

    pub fn ok_count(&self) -> usize {
        self.ok().count()
    }

    /// `replica i: reason` for every failed replica, `; `-separated.
    pub fn failures(&self) -> String {
        let failed: Vec<String> = self
            .answers
            .iter()
            .filter_map(|(i, a)| a.as_ref().err().map(|e| format!("replica {i}: {e}")))
            .collect();
        failed.join("; ")
    }
}

impl<T> Gathered<T> {
    /// The highest value that at least f+1 answers reach (`needed` of
    /// them): the f+1-th highest. At most f replicas lie, so at least one
    /// correct replica reported that much or more; a single replica cannot
    /// raise it. `None` if fewer than f+1 answered.
    pub fn vouched_max(&self, value: impl Fn(&T) -> u64) -> Option<u64> {
        let mut values: Vec<u64> = self
            .answers
            .iter()
            .filter_map(|(_, a)| a.as_ref().ok())
            .map(value)
            .collect();
        values.sort_unstable_by(|a, b| b.cmp(a));
        values.get(self.needed.checked_sub(1)?).copied()
    }
}

/// The next nonce to sign with: one above the last nonce f+1 replicas
/// vouch for. Taking the highest answer would let one lying replica pick
/// the nonce (`u64::MAX - 1` would make the client sign `u64::MAX`, and the
/// account could never send again). A lagging correct replica can only make
/// it too low, which executes as a stale nonce and is retried.
pub fn next_nonce_of(g: &Gathered<BalanceInfo>) -> Result<u64, ClientError> {
    let last = g.vouched_max(|b| b.nonce).unwrap_or(0);
    last.checked_add(1).ok_or_else(|| {
        ClientError::Disagree("the account's last nonce is u64::MAX: it can send no more".into())
    })
}

impl<T: Clone> Gathered<T> {
    /// The value at least 2f+1 replicas agree on (by `key`): PBFT's rule for
    /// answering a read without ordering it (Castro & Liskov, TOCS 2002,
    /// §5.1.3). f+1 matching answers are not enough for a read: a Byzantine
    /// replica and a lagging correct one can agree on a balance from before
    /// a transfer that already completed (issue 17, defect 11).
    pub fn agreed_by_quorum<K: Ord>(&self, key: impl Fn(&T) -> K) -> Option<QueryAnswer<T>> {
        let quorum = 2 * self.needed - 1;
        self.agreed(key).filter(|a| a.replicas >= quorum)
    }

    /// The value at least f+1 replicas agree on (by `key`), preferring the
    /// one the most replicas gave.
    pub fn agreed<K: Ord>(&self, key: impl Fn(&T) -> K) -> Option<QueryAnswer<T>> {
        let mut groups: BTreeMap<K, (usize, &T)> = BTreeMap::new();
        for (_, a) in &self.answers {
            if let Ok(v) = a {
                groups.entry(key(v)).or_insert((0, v)).0 += 1;
            }
        }
        groups
            .into_values()
            .filter(|(count, _)| *count >= self.needed)
            .max_by_key(|(count, _)| *count)
            .map(|(replicas, v)| QueryAnswer {
                value: v.clone(),
                replicas,
            })
    }
}

/// A client of one network.
pub struct Client {
    genesis: Genesis,
    key: KeyPair,
    connector: Arc<ClientConnector>,
    timeout: Duration,
    /// Re-asks of a replica after a transport failure or a transient
    /// refusal (see [`Client::retries`]).
    retries: Arc<AtomicU64>,
    /// Checks replies; remembers the block roots whose signatures it
    /// verified, so a block's replies cost one signature check per replica.
    replies: Mutex<ReplyChecker>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Client({:?}, {:?})", self.key.public(), self.timeout)
    }
}

fn retryable(e: &NetError) -> bool {
    matches!(
        e,
        NetError::Unreachable(_) | NetError::Closed(_) | NetError::Timeout
    )
}

/// Asks replica `i` until it gives a final answer or `deadline` passes.
/// With `retry`, transport failures and transient refusals are retried
/// with backoff (resubmitting is safe: replicas deduplicate by nonce).
async fn ask(
    connector: Arc<ClientConnector>,
    i: usize,
    frame: Arc<Vec<u8>>,
    deadline: Instant,
    retry: bool,
    retries: Arc<AtomicU64>,
) -> (usize, Result<ClientResponse, NetError>) {
    let mut pause = RETRY_MIN;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (i, Err(NetError::Timeout));
        }
        let result = connector.request(i, &frame, left).await.and_then(|bytes| {
            ClientResponse::from_frame(&bytes)
                .map_err(|e| NetError::Closed(format!("undecodable response: {e}")))
        });
        let again = match &result {
            Err(e) => retryable(e),
            Ok(ClientResponse::Rejected(
                SubmitRejected::Busy | SubmitRejected::Timeout | SubmitRejected::ShuttingDown,
            )) => true,
            Ok(_) => false,
        };
        if !(retry && again && Instant::now() + pause < deadline) {
            return (i, result);
        }
        retries.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(RETRY_MAX);
    }
}

/// The next of `asks` to finish, removed from it; `None` once none is left.
async fn next_answer<F: Future>(asks: &mut Vec<Pin<Box<F>>>) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        if asks.is_empty() {
            return Poll::Ready(None);
        }
        for k in 0..asks.len() {
            if let Poll::Ready(answer) = asks[k].as_mut().poll(cx) {
                drop(asks.swap_remove(k));
                return Poll::Ready(Some(answer));
            }
        }
        Poll::Pending
    })
    .await
}

fn describe(e: &NetError) -> String {
    match e {
        NetError::Timeout => "timed out".into(),
        other => other.to_string(),
    }
}

impl Client {
    /// A client of `genesis`'s network with `key`, every operation bounded
    /// by `timeout`. Must be called inside a tokio runtime.
    pub fn new(genesis: Genesis, key: KeyPair, timeout: Duration) -> Result<Client, ClientError> {
        let replicas = genesis
            .replica_keys
            .iter()
            .copied()
            .zip(genesis.client_addrs.iter().cloned())
            .collect();
        let connector = ClientConnector::new(&key, replicas, timeout.min(DIAL_TIMEOUT_MAX))
            .map_err(ClientError::Setup)?;
        Ok(Client {
            genesis,
            key,
            connector: Arc::new(connector),
            timeout,
            retries: Arc::new(AtomicU64::new(0)),
            replies: Mutex::new(ReplyChecker::default()),
        })
    }

    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }
    pub fn key(&self) -> &KeyPair {
        &self.key
    }
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
    /// f+1: the number of matching answers that include a correct replica.
    pub fn needed(&self) -> usize {
        self.genesis.cluster.weak_quorum()
    }
    /// How many times this client re-asked a replica (after a transport
    /// failure or a busy/timeout/shutting-down refusal) since it was created.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }
    fn deadline(&self) -> Instant {
        Instant::now() + self.timeout
    }
    fn timeout_ms(&self) -> u64 {
        self.timeout.as_millis() as u64
    }

    /// Closes every connection. Waits at most `CLOSE_WAIT` for the close to
    /// go out: a dial still pending to a dead replica would otherwise hold
    /// the endpoint open for a second, and the replicas' idle timeout cleans
    /// up anything not told.
    pub async fn close(self) {
        if let Ok(connector) = Arc::try_unwrap(self.connector) {
            let _ = tokio::time::timeout(CLOSE_WAIT, connector.close()).await;
        }
    }

    /// Sends `request` to every replica at once and collects answers until
    /// `enough` holds (then waits at most `grace` for the rest), every
    /// replica answered, or `deadline` passed.
    async fn gather(
        &self,
        request: &ClientRequest,
        retry: bool,
        grace: Duration,
        mut deadline: Instant,
        mut enough: impl FnMut(&[(usize, Result<ClientResponse, NetError>)]) -> bool,
    ) -> Vec<(usize, Result<ClientResponse, NetError>)> {
        let frame = Arc::new(request.to_frame());
        let n = self.connector.replica_count();
        // The asks run inside this future, not as tasks of their own: a
        // task per replica per submission cost the benchmark client more
        // than its cryptography (spawning, moving each future into its task
        // and its output out, waking through the scheduler).
        let mut asks: Vec<_> = (0..n)
            .map(|i| {
                Box::pin(ask(
                    self.connector.clone(),
                    i,
                    frame.clone(),
                    deadline,
                    retry,
                    self.retries.clone(),
                ))
            })
            .collect();
        let mut answers = Vec::with_capacity(n);
        let mut satisfied = false;
        while let Ok(Some(answer)) = tokio::time::timeout_at(deadline, next_answer(&mut asks)).await
        {
            answers.push(answer);
            if !satisfied && enough(&answers) {
                satisfied = true;
                if grace.is_zero() {
                    break;
                }
                deadline = deadline.min(Instant::now() + grace);
            }
        }
        // Dropping the unanswered asks cancels them and releases the
        // connector (close() can then close the connections).
        drop(asks);
        answered_or_timed_out(answers, n)
    }

    /// Submits `tx` to every replica and waits for f+1 matching signed
    /// replies.
    pub async fn submit(&self, tx: &Transaction) -> Result<Committed, ClientError> {
        self.submit_by(tx, Instant::now() + self.timeout).await
    }

    /// [`Client::submit`] bounded by `deadline` instead of the client's
    /// timeout.
    pub async fn submit_by(
        &self,
        tx: &Transaction,
        deadline: Instant,
    ) -> Result<Committed, ClientError> {
        let start = Instant::now();
        let verdict = Verdict {
            client: self,
            tx_id: tx.id(),
            nonce: tx.nonce,
            // The client signed `tx` with the nonce it was given: a stale
            // nonce is a result here, returned to the caller.
            replies: ReplyQuorum::new(tx, self.needed(), false),
            checked: Mutex::new(BTreeMap::new()),
        };
        let request = ClientRequest::Submit(tx.clone());
        let answers = self
            .gather(&request, true, Duration::ZERO, deadline, |a| {
                verdict.decide(a, false).is_some()
            })
            .await;
        match verdict.decide(&answers, true) {
            Some(Ok(mut committed)) => {
                committed.latency = start.elapsed();
                Ok(committed)
            }
            Some(Err(e)) => Err(e),
            None => unreachable!("decide(final = true) always decides"),
        }
    }

    /// Signs a transfer with the client's key using the next nonce (the
    /// highest nonce f+1 replicas report, plus one) and submits it; the
    /// nonce query and the submission share one timeout.
    pub async fn transfer(
        &self,
        to: PublicKey,
        amount: u64,
    ) -> Result<(Transaction, Committed), ClientError> {
        let deadline = Instant::now() + self.timeout;
        let nonce = self.next_nonce_by(deadline).await?;
        let tx = Transaction::transfer(self.genesis.network, &self.key, to, amount, nonce);
        let committed = self.submit_by(&tx, deadline).await?;
        Ok((tx, committed))
    }

    /// The next nonce for this client's account: one above the highest
    /// last-used nonce that f+1 answers vouch for (see [`next_nonce_of`]).
    pub async fn next_nonce(&self) -> Result<u64, ClientError> {
        self.next_nonce_by(Instant::now() + self.timeout).await
    }

    async fn next_nonce_by(&self, deadline: Instant) -> Result<u64, ClientError> {
        let account = self.key.public();
        let g = self
            .query(ClientRequest::Balance(account), deadline, |r| match r {
                ClientResponse::Balance(b) if b.account == account => Some(b),
                _ => None,
            })
            .await?;
        next_nonce_of(&g)
    }

    /// Every replica's view of `account`; fails unless f+1 answered.
    pub async fn balance(&self, account: PublicKey) -> Result<Gathered<BalanceInfo>, ClientError> {
        self.query(
            ClientRequest::Balance(account),
            self.deadline(),
            |r| match r {
                ClientResponse::Balance(b) if b.account == account => Some(b),
                _ => None,
            },
        )
        .await
    }

    /// Every replica's record of transaction `id` (`None`: not executed there).
    pub async fn tx(&self, id: Digest) -> Result<Gathered<Option<TxInfo>>, ClientError> {
        self.query(ClientRequest::Tx(id), self.deadline(), |r| match r {
            ClientResponse::Tx(t) if t.as_ref().is_none_or(|t| t.tx_id == id) => Some(t),
            _ => None,
        })
        .await
    }

    /// Every replica's block at `height` (`None`: not there yet).
    pub async fn block(&self, height: u64) -> Result<Gathered<Option<BlockInfo>>, ClientError> {
        self.query(ClientRequest::Block(height), self.deadline(), |r| match r {
            ClientResponse::Block(b) if b.as_ref().is_none_or(|b| b.height == height) => Some(b),
            _ => None,
        })
        .await
    }

    /// Every replica's status, or why it could not be reached. Never fails:
    /// an unreachable network is n failed answers.
    pub async fn status(&self) -> Gathered<StatusInfo> {
        let answers = self
            .gather(
                &ClientRequest::Status,
                false,
                Duration::ZERO,
                self.deadline(),
                |_| false,
            )
            .await;
        Gathered {
            answers: convert(answers, |r| match r {
                ClientResponse::Status(s) => Some(s),
                _ => None,
            }),
            needed: self.needed(),
        }
    }

    /// Asks every replica; succeeds once f+1 gave a well-formed answer
    /// (waiting briefly for the rest), fails if fewer did in time.
    async fn query<T>(
        &self,
        request: ClientRequest,
        deadline: Instant,
        extract: impl Fn(ClientResponse) -> Option<T>,
    ) -> Result<Gathered<T>, ClientError> {
        let needed = self.needed();
        let answers = self
            .gather(&request, true, QUERY_GRACE, deadline, |a| {
                a.iter().filter(|(_, r)| r.is_ok()).count() >= needed
            })
            .await;
        let g = Gathered {
            answers: convert(answers, extract),
            needed,
        };
        if g.ok_count() >= needed {
            return Ok(g);
        }
        Err(if g.ok_count() == 0 {
            ClientError::Unreachable {
                timeout_ms: self.timeout_ms(),
                detail: g.failures(),
            }
        } else {
            ClientError::Timeout {
                needed,
                timeout_ms: self.timeout_ms(),
                detail: format!("{} answered; {}", g.ok_count(), g.failures()),
            }
        })
    }
}

/// Answers sorted by replica, with a timeout recorded for every replica
/// that gave none.
fn answered_or_timed_out(
    mut answers: Vec<(usize, Result<ClientResponse, NetError>)>,
    n: usize,
) -> Vec<(usize, Result<ClientResponse, NetError>)> {
    for i in 0..n {
        if !answers.iter().any(|(j, _)| *j == i) {
            answers.push((i, Err(NetError::Timeout)));
        }
    }
    answers.sort_by_key(|(i, _)| *i);
    answers
}

fn convert<T>(
    answers: Vec<(usize, Result<ClientResponse, NetError>)>,
    extract: impl Fn(ClientResponse) -> Option<T>,
) -> Vec<ReplicaAnswer<T>> {
    answers
        .into_iter()
        .map(|(i, r)| {
            let r = match r {
                Ok(ClientResponse::Malformed) => Err("replica could not decode the request".into()),
                Ok(resp) => extract(resp).ok_or_else(|| "unexpected answer".to_string()),
                Err(e) => Err(describe(&e)),
            };
            (i, r)
        })
        .collect()
}

/// A reply proof as received and the outcome of checking it.
type CheckedReply = (ReplyProof, Result<Reply, String>);

/// Judges the answers to one submission.
struct Verdict<'a> {
    client: &'a Client,
    tx_id: Digest,
    nonce: u64,
    /// No replies yet: `decide` counts the answers into a copy.
    replies: ReplyQuorum,
    /// Each replica's reply as last checked, and the outcome: `decide` runs
    /// after every answer and looks at all of them, and each is checked once.
    checked: Mutex<BTreeMap<usize, CheckedReply>>,
}

impl Verdict<'_> {
    /// Replica `i`'s reply if its proof holds and replica `i` signed it.
    /// The client's checker remembers verified roots, so a block's root
    /// signature is verified once for all of the client's replies in it.
    fn verified(&self, i: usize, proof: &ReplyProof) -> Result<Reply, String> {
        let mut checked = self.checked.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((seen, outcome)) = checked.get(&i) {
            if seen == proof {
                return outcome.clone();
            }
        }
        let outcome = {
            let mut checker = self
                .client
                .replies
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            match checker.check(&self.client.genesis.verifier, proof) {
                Ok((signer, _)) if signer.index() != i => {
                    Err("reply signed by another replica".to_string())
                }
                Ok((_, reply)) => Ok(reply),
                Err(e) => Err(e.to_string()),
            }
        };
        checked.insert(i, (proof.clone(), outcome.clone()));
        outcome
    }

    /// `Some` once the outcome is certain; with `fin`, always `Some` (the
    /// answers are all there will be).
    fn decide(
        &self,
        answers: &[(usize, Result<ClientResponse, NetError>)],
        fin: bool,
    ) -> Option<Result<Committed, ClientError>> {
        let c = self.client;
        let needed = c.needed();
        let n = c.connector.replica_count();
        let mut replies = self.replies.clone();
        let mut refusals = RefusalQuorum::new(needed);
        let mut notes: Vec<String> = Vec::new();
        let mut unreachable = 0;
        let mut transient = 0;
        for (i, r) in answers {
            match r {
                Ok(ClientResponse::Reply(proof)) => {
                    let reply = match self.verified(*i, proof) {
                        Ok(reply) => reply,
                        Err(why) => {
                            notes.push(format!("replica {i}: {why}"));
                            continue;
                        }
                    };
                    if !replies.add(ReplicaId(*i as u32), &reply) {
                        notes.push(format!("replica {i}: reply for another request"));
                    }
                }
                Ok(ClientResponse::Rejected(reason)) => {
                    notes.push(format!("replica {i}: {reason}"));
                    match reason {
                        // Final: the replica will never execute it.
                        SubmitRejected::BadSignature
                        | SubmitRejected::StaleNonce { .. }
                        | SubmitRejected::UnknownAccount
                        | SubmitRejected::WouldFail(_) => {
                            refusals.add(ReplicaId(*i as u32), *reason)
                        }
                        // Transient, and already retried until the deadline.
                        _ => transient += 1,
                    }
                }
                Ok(_) => notes.push(format!("replica {i}: unexpected answer")),
                Err(e) => {
                    unreachable += 1;
                    notes.push(format!("replica {i}: {}", describe(e)));
                }
            }
        }
        match replies.decision() {
            Some(ReplyDecision::Committed {
                seq,
                receipt,
                replicas,
            }) => {
                return Some(Ok(Committed {
                    tx_id: self.tx_id,
                    nonce: self.nonce,
                    height: seq.0,
                    receipt,
                    replicas: replicas.iter().map(|r| r.0).collect(),
                    latency: Duration::ZERO,
                }))
            }
            Some(ReplyDecision::NonceConflict { other }) => {
                return Some(Err(ClientError::NonceConflict {
                    nonce: self.nonce,
                    other,
                }))
            }
            // Not with a nonce the caller gave (`learned_nonce` is false).
            Some(ReplyDecision::StaleLearnedNonce) => {
                unreachable!("the client's quorum is not told of learned nonces")
            }
            None => {}
        }
        if let Some((reason, count)) = refusals.decision() {
            return Some(Err(ClientError::Rejected { reason, count }));
        }
        let best = replies.best();
        let outstanding = n.saturating_sub(answers.len());
        if !fin && best + outstanding >= needed {
            return None;
        }
        let detail = notes.join("; ");
        Some(Err(if unreachable == answers.len() {
            ClientError::Unreachable {
                timeout_ms: c.timeout_ms(),
                detail,
            }
        } else if outstanding == 0 && unreachable == 0 && transient == 0 {
            ClientError::Disagree(detail)
        } else {
            ClientError::Timeout {
                needed,
                timeout_ms: c.timeout_ms(),
                detail,
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers(nonces: &[Option<u64>]) -> Gathered<BalanceInfo> {
        let account = KeyPair::from_label("nonce-client").public();
        Gathered {
            answers: nonces
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    let a = n.map(|nonce| BalanceInfo {
                        account,
                        exists: true,
                        balance: 10,
                        nonce,
                        height: 3,
                    });
                    (i, a.ok_or_else(|| "down".to_string()))
                })
                .collect(),
            needed: 2,
        }
    }

    /// Issue 17, defect 4: one lying replica cannot pick the nonce.
    #[test]
    fn the_next_nonce_is_what_f_plus_1_vouch_for() {
        let next = |n: &[Option<u64>]| next_nonce_of(&answers(n)).ok();
        assert_eq!(next(&[Some(7), Some(7), Some(7), Some(7)]), Some(8));
        // A liar far ahead, or at u64::MAX (whose +1 would overflow).
        assert_eq!(next(&[Some(7), Some(u64::MAX - 1), Some(7), None]), Some(8));
        assert_eq!(next(&[Some(u64::MAX), Some(7), Some(7), Some(7)]), Some(8));
        // A lagging correct replica and a liar below: still the vouched one.
        assert_eq!(next(&[Some(7), Some(5), Some(0), Some(7)]), Some(8));
        // One lagging, one down: the lower of the two that answered.
        assert_eq!(next(&[Some(7), Some(6), None, None]), Some(7));
        // Fewer than f+1 answers vouch for nothing.
        assert_eq!(next(&[Some(7), None, None, None]), Some(1));
        // f+1 at u64::MAX: exhausted, an error rather than a wrap.
        assert!(next_nonce_of(&answers(&[Some(u64::MAX), Some(u64::MAX), None, None])).is_err());
    }

    /// Issue 17, defect 11: a read needs 2f+1 matching answers; a lagging
    /// replica and a liar agreeing on a stale value (f+1) are not enough.
    #[test]
    fn a_read_needs_a_quorum_of_matching_answers() {
        let stale = answers(&[Some(7), Some(8), Some(7), Some(8)]);
        assert_eq!(stale.agreed(|b| b.nonce).map(|a| a.replicas), Some(2));
        assert_eq!(stale.agreed_by_quorum(|b| b.nonce), None);
        let settled = answers(&[Some(8), Some(8), Some(7), Some(8)]);
        let a = settled.agreed_by_quorum(|b| b.nonce).expect("three agree");
        assert_eq!((a.value.nonce, a.replicas), (8, 3));
    }
}
