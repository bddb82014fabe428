//! The simulated clients: closed-loop transfers (one outstanding each),
//! sent to every replica and accepted on f+1 matching signed replies
//! ([`ReplyQuorum`], the real client's rule); "busy" answers and resends;
//! refusals by f+1 alike ([`RefusalQuorum`], the real client's rule too);
//! client restarts that forget the nonce, and the balance queries that
//! learn it again (the real client's `next_nonce_of` and `Gathered` rules),
//! with retries when a learned nonce was used already.

use super::*;

pub(super) const CLIENT_BALANCE: u64 = 1_000;

/// After f+1 answers to a query, how long a client waits for the others:
/// the real client's `QUERY_GRACE` (src/client/session.rs).
pub(super) const QUERY_GRACE_MS: u64 = 300;

/// Times one transfer may be signed again because the nonce it had was
/// used already before the client counts as stuck (C2).
pub(super) const NONCE_RETRIES_MAX: u32 = 8;

pub(super) struct Outstanding {
    pub(super) tx: Transaction,
    pub(super) first_sent: Time,
    pub(super) sent_at: Time,
    /// The signed replies, and whether they decided. Its nonce is
    /// "learned" if it was signed after the client restarted: the nonce
    /// (learned from the replicas, or counted on from there) may be used
    /// already — by a transfer signed before the restart that f+1 refused
    /// and that was admitted later, or because the answers lagged.
    pub(super) replies: ReplyQuorum,
    /// Replicas that refused it, and the receipt it would have failed with.
    pub(super) refusals: RefusalQuorum<Receipt>,
    /// Times it was sent again after the client's timeout.
    pub(super) resends: u32,
}

/// Why a client asks the replicas for its account (its number is hashed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum QueryPurpose {
    /// It restarted (or its last nonce was used already): it learns its
    /// next nonce, and its balance, before signing.
    Nonce = 0,
    /// Its outstanding transfer, signed with a learned nonce, gets no
    /// answer: is that nonce used already?
    Check = 1,
}

/// A client's balance query in flight, and the answers so far.
pub(super) struct PendingQuery {
    pub(super) id: u64,
    pub(super) purpose: QueryPurpose,
    pub(super) started: Time,
    pub(super) answers: BTreeMap<usize, Result<BalanceInfo, String>>,
    /// f+1 answered: the client waits `QUERY_GRACE_MS` for the others.
    pub(super) grace: bool,
}

/// A transfer to sign again with the next nonce the replicas vouch for.
pub(super) struct Retry {
    pub(super) to: PublicKey,
    pub(super) amount: u64,
    pub(super) first_sent: Time,
}

pub(super) struct Client {
    pub(super) key: KeyPair,
    pub(super) nonce: u64,
    pub(super) submitted: u64,
    pub(super) target: u64,
    pub(super) outstanding: Option<Outstanding>,
    /// Ids of transfers this client saw commit, with their receipts, and
    /// of those f+1 replicas refused (with the receipt they would fail with).
    pub(super) results: Vec<(Digest, Receipt)>,
    /// How many of `results` were refused, not ordered.
    pub(super) refused: u64,
    pub(super) latencies_ms: Vec<u64>,
    /// False after a restart: the next transfer waits for a balance query.
    pub(super) nonce_known: bool,
    /// `nonce` came from a query and the next transfer is its first use.
    pub(super) nonce_queried: bool,
    /// It restarted at least once (its nonces are no longer its own count).
    pub(super) restarted: bool,
    /// The balance the last query read (2f+1 alike), for the next transfer.
    pub(super) balance: Option<u64>,
    pub(super) query: Option<PendingQuery>,
    pub(super) retry: Option<Retry>,
    /// Times the current transfer was signed again (its nonce was used).
    pub(super) retries_in_row: u32,
    /// The highest nonce f+1 replies showed used (executed for another
    /// transaction, or as stale) since the client last restarted: at least
    /// one correct replica executed it, so a nonce query that answers lower
    /// reflects lagging replicas, and the client signs above it instead.
    pub(super) used_nonce: u64,
}

impl Sim {
    pub(super) fn client_timeout_ms(&self) -> u64 {
        self.scenario.request_timeout_ms * 2
    }

    pub(super) fn client_tick(&mut self, c: usize) {
        let now = self.now;
        let timeout = self.client_timeout_ms();
        if self.clients[c].outstanding.as_ref().is_some_and(|o| {
            now.saturating_sub_millis(o.first_sent) > 10 * self.scenario.request_timeout_ms
        }) {
            self.last_stall = Some(now);
        }
        // A query that got fewer answers than it waits for ends at the
        // client's timeout, with what it has (as the real client's).
        if self.clients[c]
            .query
            .as_ref()
            .is_some_and(|q| now.saturating_sub_millis(q.started) >= timeout)
        {
            self.finish_query(c);
        }
        let querying = self.clients[c].query.is_some();
        let client = &self.clients[c];
        let wants_transfer = client.retry.is_some() || client.submitted < client.target;
        let (timed_out, check) = match &client.outstanding {
            Some(o) if now.saturating_sub_millis(o.sent_at) >= timeout => (
                true,
                o.replies.learned_nonce() && o.resends >= 2 && !querying,
            ),
            _ => (false, false),
        };
        let idle = client.outstanding.is_none();
        let resend = if timed_out {
            // A transfer signed after a restart that gets no answer at all
            // may have a nonce used already (a replica past it answers
            // nothing): the client asks whether it is.
            if check {
                self.start_query(c, QueryPurpose::Check);
            }
            self.clients[c].outstanding.as_ref().map(|o| o.tx.clone())
        } else if idle && wants_transfer && !querying {
            self.new_transfer(c)
        } else {
            None
        };
        if let Some(tx) = resend {
            if let Some(o) = &mut self.clients[c].outstanding {
                if o.sent_at != now {
                    o.resends += 1;
                }
                o.sent_at = now;
            }
            self.record(TraceEvent::ClientSend {
                client: c,
                nonce: tx.nonce,
            });
            self.send_request(Endpoint::Client(c), &tx, None);
        }
        if self.client_busy(c) {
            self.push(now.plus_millis(timeout / 2), Event::ClientTick(c));
        }
    }

    /// Whether client `c` still has something to do (or wait for).
    pub(super) fn client_busy(&self, c: usize) -> bool {
        let client = &self.clients[c];
        client.outstanding.is_some()
            || client.query.is_some()
            || client.retry.is_some()
            || client.submitted < client.target
    }

    /// Client `c`'s next transfer (or the one it signs again), signed; or
    /// `None` while it must first learn its nonce. In seeds with client
    /// restarts a client sometimes forgets its nonce and balance first.
    pub(super) fn new_transfer(&mut self, c: usize) -> Option<Transaction> {
        let now = self.now;
        let rate = self.scenario.query_rate;
        let client = &self.clients[c];
        if client.nonce_known
            && !client.nonce_queried
            && client.retry.is_none()
            && rate > 0.0
            && self.query_rng.gen_bool(rate)
        {
            let client = &mut self.clients[c];
            client.nonce_known = false;
            client.restarted = true;
            client.balance = None;
            client.used_nonce = 0;
            self.log(|| format!("CLIENT {c} RESTARTS: forgets its nonce and balance"));
        }
        if !self.clients[c].nonce_known {
            self.start_query(c, QueryPurpose::Nonce);
            return None;
        }
        let client = &mut self.clients[c];
        let (to, amount, first_sent) = match client.retry.take() {
            Some(r) => (r.to, r.amount, r.first_sent),
            None => {
                client.submitted += 1;
                let known = client.balance.take();
                let others: Vec<PublicKey> = self
                    .client_index
                    .keys()
                    .filter(|k| **k != client.key.public())
                    .copied()
                    .collect();
                let to = others[self.client_rng.gen_range(0..others.len())];
                // Mostly affordable amounts, sometimes more than any balance.
                let amount = if self.client_rng.gen_bool(0.1) {
                    CLIENT_BALANCE * 10
                } else {
                    let a = self.client_rng.gen_range(1..=CLIENT_BALANCE / 4);
                    // What a restarted client read it holds bounds it.
                    known.map_or(a, |b| a.min(b.max(1)))
                };
                (to, amount, now)
            }
        };
        client.nonce = client.nonce.saturating_add(1);
        client.nonce_queried = false;
        let tx = Transaction::transfer(self.genesis.network, &client.key, to, amount, client.nonce);
        let key = client.key.public();
        let weak = self.genesis.cluster.weak_quorum();
        client.outstanding = Some(Outstanding {
            tx: tx.clone(),
            first_sent,
            sent_at: now,
            replies: ReplyQuorum::new(&tx, weak, client.restarted),
            refusals: RefusalQuorum::new(weak),
            resends: 0,
        });
        self.checker.on_client_sign(c, &key, tx.nonce);
        self.checker.submitted.insert(tx.id());
        Some(tx)
    }

    /// Client `c` asks every replica for its account (the real client's
    /// `Client::balance` / `next_nonce`): one query to each, over the
    /// clients' network, answered by the replica's client service.
    pub(super) fn start_query(&mut self, c: usize, purpose: QueryPurpose) {
        self.next_query += 1;
        self.queries += 1;
        let id = self.next_query;
        self.record(TraceEvent::QueryStart {
            client: c,
            id,
            purpose,
        });
        self.log(|| format!("CLIENT {c} QUERY {id} ({purpose:?})"));
        self.clients[c].query = Some(PendingQuery {
            id,
            purpose,
            started: self.now,
            answers: BTreeMap::new(),
            grace: false,
        });
        for r in 0..self.scenario.replicas {
            if let Some(at) = self.query_hop() {
                let replica = ReplicaId(r);
                self.push(
                    at,
                    Event::QueryArrive {
                        client: c,
                        replica,
                        id,
                    },
                );
            }
        }
    }

    /// When a query or its answer arrives, if the network does not lose it
    /// (loss and delay as the replicas' links now, from `query_rng`).
    pub(super) fn query_hop(&mut self) -> Option<Time> {
        let (loss, _, lo, hi) = self.link();
        if loss > 0.0 && self.query_rng.gen_bool(loss) {
            return None;
        }
        let delay_us = self.query_rng.gen_range(lo * 1000..=hi * 1000);
        Some(Time(self.now.0 + delay_us))
    }

    /// A replica's client service answers a balance query as
    /// `node::service` does — from the account in its executed state and
    /// its height — unless its adversary answers otherwise. A replica that
    /// is down answers nothing.
    pub(super) fn on_query_arrive(&mut self, c: usize, r: ReplicaId, id: u64) {
        self.record(TraceEvent::QueryArrive {
            client: c,
            replica: r,
            id,
        });
        let account = self.clients[c].key.public();
        let Some(node) = self.nodes[r.index()].as_ref() else {
            return;
        };
        let a = node.account(&account);
        let truth = BalanceInfo {
            account,
            exists: a.is_some(),
            balance: a.map_or(0, |a| a.balance),
            nonce: a.map_or(0, |a| a.nonce),
            height: node.height(),
        };
        let honest = ClientResponse::Balance(truth);
        let response = if self.strategies.contains_key(&r) {
            let request = ClientRequest::Balance(account);
            let answer = self.with_strategy(r, |s, ctx| {
                Some(s.answer_query(ctx, &request, honest.clone()))
            });
            answer.unwrap_or_else(|| honest.clone())
        } else {
            honest.clone()
        };
        if !self.checker.byzantine.contains(&r) {
            self.checker
                .on_account_state(account, truth.exists, truth.balance, truth.nonce);
        }
        if response != honest {
            self.query_lies += 1;
        }
        if let Some(at) = self.query_hop() {
            self.push(
                at,
                Event::QueryAnswer {
                    client: c,
                    replica: r,
                    id,
                    response,
                },
            );
        }
    }

    /// An answer to client `c`'s query: kept if it is an answer about its
    /// account (what the real client's `Client::balance` extracts); once
    /// f+1 are in the client waits `QUERY_GRACE_MS` for the rest.
    pub(super) fn on_query_answer(
        &mut self,
        c: usize,
        r: ReplicaId,
        id: u64,
        response: ClientResponse,
    ) {
        self.record(TraceEvent::QueryAnswer {
            client: c,
            replica: r,
            id,
        });
        let needed = self.genesis.cluster.weak_quorum();
        let n = self.scenario.replicas as usize;
        let account = self.clients[c].key.public();
        let Some(q) = self.clients[c].query.as_mut().filter(|q| q.id == id) else {
            return;
        };
        let answer = match response {
            ClientResponse::Balance(b) if b.account == account => Ok(b),
            _ => Err("unexpected answer".to_string()),
        };
        q.answers.entry(r.index()).or_insert(answer);
        let ok = q.answers.values().filter(|a| a.is_ok()).count();
        if q.answers.len() == n {
            self.finish_query(c);
        } else if ok >= needed && !q.grace {
            q.grace = true;
            let at = self.now.plus_millis(QUERY_GRACE_MS);
            self.push(at, Event::QueryDone { client: c, id });
        }
    }

    /// Client `c` combines its query's answers with the real client's rules:
    /// the next nonce is one above the last nonce f+1 answers vouch for
    /// (`client::next_nonce_of`), the balance is what 2f+1 agree on
    /// (`Gathered::agreed_by_quorum`). Fewer than f+1 answers: it asks again.
    pub(super) fn finish_query(&mut self, c: usize) {
        let Some(q) = self.clients[c].query.take() else {
            return;
        };
        let needed = self.genesis.cluster.weak_quorum();
        let n = self.scenario.replicas as usize;
        let g = Gathered {
            answers: (0..n)
                .map(|i| {
                    let a = q.answers.get(&i).cloned();
                    (i, a.unwrap_or_else(|| Err("timed out".into())))
                })
                .collect(),
            needed,
        };
        if g.ok_count() < needed {
            self.log(|| format!("CLIENT {c} QUERY {} got {} answers", q.id, g.ok_count()));
            self.start_query(c, q.purpose);
            return;
        }
        let account = self.clients[c].key.public();
        let read = g
            .agreed_by_quorum(|b| (b.exists, b.balance, b.nonce))
            .map(|a| a.value);
        if let Some(b) = read {
            self.checker
                .on_client_read(c, &account, b.exists, b.balance, b.nonce);
        }
        let next = match next_nonce_of(&g) {
            Ok(next) => next,
            Err(e) => {
                let nonces: Vec<u64> = g.ok().map(|(_, b)| b.nonce).collect();
                self.checker.report(format!(
                    "C1 client nonce: client {c} cannot pick a nonce ({e}) from the last nonces {nonces:?}"
                ));
                // It tries again later; L1 judges whether it ever can.
                self.clients[c].nonce_known = false;
                return;
            }
        };
        self.log(|| {
            format!(
                "CLIENT {c} QUERY {} ({:?}): next nonce {next}",
                q.id, q.purpose
            )
        });
        let client = &mut self.clients[c];
        match q.purpose {
            QueryPurpose::Nonce => {
                client.nonce = (next - 1).max(client.used_nonce);
                client.nonce_known = true;
                client.nonce_queried = true;
                client.balance = read.map(|b| b.balance);
                self.push(self.now, Event::ClientTick(c));
            }
            QueryPurpose::Check => {
                let used = client
                    .outstanding
                    .as_ref()
                    .is_some_and(|o| next > o.tx.nonce);
                if used {
                    self.nonce_used(c, Some(next));
                }
            }
        }
    }

    /// Client `c`'s outstanding transfer has a nonce used already (by
    /// another transaction, or it executed as stale): it gives it up and
    /// signs the same transfer again with the next nonce — known (`next`)
    /// or to be learned from the replicas. C2: a transfer that needs more
    /// than `NONCE_RETRIES_MAX` nonces means the client keeps picking used
    /// ones.
    pub(super) fn nonce_used(&mut self, c: usize, next: Option<u64>) {
        if self.clients[c].outstanding.is_none() {
            return;
        }
        self.nonce_retries += 1;
        let client = &mut self.clients[c];
        let Some(o) = client.outstanding.take() else {
            return;
        };
        client.retries_in_row += 1;
        client.used_nonce = client.used_nonce.max(o.tx.nonce);
        client.retry = Some(Retry {
            to: o.tx.to,
            amount: o.tx.amount,
            first_sent: o.first_sent,
        });
        match next {
            Some(next) => {
                client.nonce = (next - 1).max(client.used_nonce);
                client.nonce_queried = true;
            }
            None => client.nonce_known = false,
        }
        let tries = client.retries_in_row;
        self.record(TraceEvent::NonceUsed {
            client: c,
            nonce: o.tx.nonce,
        });
        self.log(|| {
            format!(
                "CLIENT {c} NONCE {} USED: signs the transfer again",
                o.tx.nonce
            )
        });
        if tries == NONCE_RETRIES_MAX + 1 {
            self.checker.report(format!(
                "C2 client progress: client {c} signed one transfer {tries} times, each time with a nonce used already (last {})",
                o.tx.nonce
            ));
        }
        self.push(self.now, Event::ClientTick(c));
    }

    /// A client accepts a result on f+1 matching signed replies, as the
    /// real client does ([`ReplyQuorum`]).
    pub(super) fn on_reply(&mut self, c: usize, proof: ReplyProof) {
        let (signer, v) = match self.replies.check(&self.verifier, &proof) {
            Ok(checked) => checked,
            Err(e) => {
                self.checker
                    .report(format!("client {c} received a bad reply: {e}"));
                return;
            }
        };
        let now = self.now;
        let client = &mut self.clients[c];
        let Some(o) = &mut client.outstanding else {
            return;
        };
        if !o.replies.add(signer, &v) {
            return;
        }
        match o.replies.decision() {
            None => {}
            // The reply a replica keeps for the client's last nonce names
            // another transaction: f+1 alike, and the nonce is used. Or a
            // learned nonce that was used already (a lagging replica's
            // answer). The transfer is signed again with a fresh one.
            Some(ReplyDecision::NonceConflict { .. } | ReplyDecision::StaleLearnedNonce) => {
                self.nonce_used(c, None)
            }
            Some(ReplyDecision::Committed { receipt, .. }) => {
                client.retries_in_row = 0;
                let latency = now.saturating_sub_millis(o.first_sent);
                client.results.push((o.tx.id(), receipt));
                client.latencies_ms.push(latency);
                self.finish = now;
                client.outstanding = None;
                self.record(TraceEvent::ClientAccept {
                    client: c,
                    nonce: v.nonce,
                });
                let think = self.client_rng.gen_range(0..5);
                self.push(now.plus_millis(think), Event::ClientTick(c));
            }
        }
    }

    /// A client gives up a transfer that f+1 replicas refused alike: it
    /// would fail, so it is not ordered (counted as a result with that
    /// receipt; the nonce was not used).
    pub(super) fn on_refused(
        &mut self,
        c: usize,
        replica: ReplicaId,
        tx_id: Digest,
        receipt: Receipt,
    ) {
        self.record(TraceEvent::Refused {
            client: c,
            replica,
            tx_id,
        });
        let now = self.now;
        let client = &mut self.clients[c];
        let Some(o) = &mut client.outstanding else {
            return;
        };
        if o.tx.id() != tx_id {
            return;
        }
        o.refusals.add(replica, receipt);
        let Some((receipt, _)) = o.refusals.decision() else {
            return;
        };
        client.refused += 1;
        client.retries_in_row = 0;
        client.results.push((tx_id, receipt));
        client
            .latencies_ms
            .push(now.saturating_sub_millis(o.first_sent));
        client.outstanding = None;
        let think = self.client_rng.gen_range(0..5);
        self.push(now.plus_millis(think), Event::ClientTick(c));
    }

    /// A replica said "busy" to client `c`'s request `tx_id`.
    pub(super) fn on_busy(&mut self, client: usize, replica: ReplicaId, tx_id: Digest) {
        // The real client retries that replica after a short pause.
        self.record(TraceEvent::Busy {
            client,
            replica,
            tx_id,
        });
        let pause = self.client_rng.gen_range(20..=100);
        self.push(
            self.now.plus_millis(pause),
            Event::Resend {
                client,
                replica,
                tx_id,
            },
        );
    }

    /// Client `c` sends its outstanding request again to one replica (if
    /// it is still the one outstanding).
    pub(super) fn on_resend(&mut self, client: usize, replica: ReplicaId, tx_id: Digest) {
        let tx = match &self.clients[client].outstanding {
            Some(o) if o.tx.id() == tx_id => o.tx.clone(),
            _ => return,
        };
        self.record(TraceEvent::Resend {
            client,
            replica,
            tx_id,
        });
        self.send_request(Endpoint::Client(client), &tx, Some(&|r| r == replica.0));
    }
}
