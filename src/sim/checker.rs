//! Invariants checked while a simulation runs (TESTING.md).
//!
//! The checker sees every block each replica commits, every vote each replica
//! sends, and the durable state a replica comes back with after a crash. It
//! reports a violation as soon as one is visible; it never stops the run.

use crate::consensus::messages::{Commit, Message, PrePrepare, Prepare, ViewChange};
use crate::crypto::{Digest, Payload, PublicKey, Signed};
use crate::node::CommittedBlock;
use crate::tx::Receipt;
use crate::types::{ReplicaId, View};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Default)]
pub struct Checker {
    /// The first block seen committed at each height (by any replica).
    canonical: BTreeMap<u64, Digest>,
    /// Each replica's committed chain, by height.
    chains: BTreeMap<ReplicaId, Vec<Digest>>,
    /// Per transaction id, the height and receipt of its first execution
    /// in the canonical chain that was not refused as stale: its final
    /// receipt. Any later execution of it must be stale.
    receipts: BTreeMap<Digest, (u64, Receipt)>,
    /// Ids of every transaction a correct client signed.
    pub submitted: BTreeSet<Digest>,
    /// (replica, kind, view, seq) → digest of each vote a replica signed.
    votes: BTreeMap<(ReplicaId, u8, u64, u64), Digest>,
    pub violations: Vec<String>,
    /// Replicas under adversary control: none of their commits, votes or
    /// restarts is judged (the invariants are about correct replicas).
    pub byzantine: BTreeSet<ReplicaId>,
    /// Each account's last nonce in the canonical chain (a transfer that
    /// executed, or was refused as stale or too far ahead, leaves it).
    account_nonces: BTreeMap<PublicKey, u64>,
    /// Every (exists, balance, nonce) a correct replica answered for an
    /// account (and its genesis state).
    account_states: BTreeMap<PublicKey, BTreeSet<(bool, u64, u64)>>,
}

impl Checker {
    fn violation(&mut self, v: String) {
        if self.violations.len() < 20 {
            self.violations.push(v);
        }
    }

    /// S1 agreement, S2 chain, S4 validity / exactly-once.
    pub fn on_commit(&mut self, replica: ReplicaId, block: &CommittedBlock) {
        if self.byzantine.contains(&replica) {
            return;
        }
        let chain = self.chains.entry(replica).or_default();
        if block.height != chain.len() as u64 + 1 {
            let have = chain.len();
            self.violation(format!(
                "S2 chain: {replica:?} committed height {} after height {have}",
                block.height
            ));
            return;
        }
        chain.push(block.block_hash);
        match self.canonical.get(&block.height) {
            Some(h) if *h != block.block_hash => {
                let h = *h;
                self.violation(format!(
                    "S1 agreement: {replica:?} committed {:?} at height {} but another replica committed {h:?}",
                    block.block_hash, block.height
                ));
            }
            Some(_) => {}
            None => {
                self.canonical.insert(block.height, block.block_hash);
                for (id, from, nonce, receipt) in &block.txs {
                    if !self.submitted.contains(id) {
                        self.violation(format!(
                            "S4 validity: height {} holds transaction {id:?} no client signed",
                            block.height
                        ));
                    }
                    // Refusals with no effect: a stale nonce is never
                    // anything else later; a nonce too far ahead may execute
                    // once the account's nonce comes near it.
                    if matches!(receipt, Receipt::StaleNonce | Receipt::NonceTooFar) {
                        continue;
                    }
                    let last = self.account_nonces.entry(*from).or_default();
                    *last = (*last).max(*nonce);
                    // S4 exactly-once and receipt finality (issue 24,
                    // defect 4): one outcome per transaction.
                    match self.receipts.get(id).copied() {
                        Some((first, before)) => self.violation(format!(
                            "S4 receipt finality: transaction {id:?} executed as {before:?} at height {first} and again as {receipt:?} at height {}",
                            block.height
                        )),
                        None => {
                            self.receipts.insert(*id, (block.height, *receipt));
                        }
                    }
                }
            }
        }
    }

    /// S3 durability: a restarted replica's chain must extend what it had.
    pub fn on_restart(&mut self, replica: ReplicaId, height: u64, tip_hash: Digest) {
        if self.byzantine.contains(&replica) {
            return;
        }
        let chain = self.chains.entry(replica).or_default().clone();
        if height < chain.len() as u64 {
            self.violation(format!(
                "S3 durability: {replica:?} restarted at height {height} after committing {}",
                chain.len()
            ));
        } else if height > chain.len() as u64 {
            self.violation(format!(
                "S3 durability: {replica:?} restarted at height {height} beyond the {} it committed",
                chain.len()
            ));
        } else if height > 0 && chain[height as usize - 1] != tip_hash {
            self.violation(format!(
                "S3 durability: {replica:?} restarted with a different block at height {height}"
            ));
        }
    }

    /// Replica `replica` lost its store (wiped): it restarts at height 0 and
    /// its chain is judged afresh as it catches up. What it signed before
    /// is kept (S7: a wiped replica must not contradict it).
    pub fn on_wipe(&mut self, replica: ReplicaId) {
        self.chains.remove(&replica);
    }

    /// S7: a correct replica never signs two different votes for one slot.
    /// A message a replica sends while it has executed every seq up to
    /// `executed` (null requests included).
    /// `message` is what the replica's core sends, before any adversary
    /// strategy rewrites it: S11 holds for the core of every replica
    /// (Byzantine ones run the same core), the other rules for correct
    /// replicas only.
    pub fn on_send(&mut self, sender: ReplicaId, message: &Message, executed: u64) {
        if let Message::PrePrepare { pre_prepare, .. } = message {
            self.proposal_above_height(sender, pre_prepare, executed);
        }
        if self.byzantine.contains(&sender) {
            return;
        }
        match message {
            Message::PrePrepare { pre_prepare, .. } => self.vote(sender, 0, pre_prepare),
            Message::Prepare(p) => self.vote(sender, 1, p),
            Message::Commit(c) => self.vote(sender, 2, c),
            Message::ViewChange(vc) if vc.signer == sender => {
                if let Ok(v) = ViewChange::decode(&vc.payload) {
                    let d =
                        crate::crypto::digest(crate::crypto::Domain::ViewChange, &[&vc.payload]);
                    self.record(sender, 3, v.new_view, 0, d);
                }
            }
            _ => {}
        }
    }

    /// S11: a correct replica proposes (and re-sends its proposals) only
    /// above the last seq it executed: a PRE-PREPARE at or below it is wasted, and
    /// its slot would sit below the stable checkpoint (a primary that
    /// caught up by fetching once proposed at its old next seq, seed
    /// 2100264 bad-new-view). The core's own invariant check found that
    /// bug; this rule sees it from outside, so it also holds while a tooth
    /// switches the core's checks off.
    fn proposal_above_height(&mut self, sender: ReplicaId, s: &Signed<PrePrepare>, executed: u64) {
        if s.signer != sender {
            return;
        }
        if let Ok(pp) = PrePrepare::decode(&s.payload) {
            if pp.seq.0 <= executed {
                self.violation(format!(
                    "S11 proposals: {sender:?} sent a PRE-PREPARE for view {} seq {} at or below its last executed seq {executed}",
                    pp.view.0, pp.seq.0
                ));
            }
        }
    }

    fn vote<T: Payload + VoteFields>(&mut self, sender: ReplicaId, kind: u8, s: &Signed<T>) {
        if s.signer != sender {
            return;
        }
        if let Ok(v) = T::decode(&s.payload) {
            let (view, seq, digest) = v.fields();
            self.record(sender, kind, view, seq, digest);
        }
    }

    fn record(&mut self, sender: ReplicaId, kind: u8, view: View, seq: u64, digest: Digest) {
        match self.votes.get(&(sender, kind, view.0, seq)) {
            Some(d) if *d != digest => {
                let name = ["pre-prepare", "prepare", "commit", "view-change"][kind as usize];
                self.violation(format!(
                    "S7 equivocation: {sender:?} signed two different {name}s for view {} seq {seq}",
                    view.0
                ));
            }
            Some(_) => {}
            None => {
                self.votes.insert((sender, kind, view.0, seq), digest);
            }
        }
    }

    pub fn chain(&self, replica: ReplicaId) -> &[Digest] {
        self.chains.get(&replica).map_or(&[], |c| c.as_slice())
    }

    pub fn max_height(&self) -> u64 {
        self.canonical.len() as u64
    }

    pub fn succeeded(&self, id: &Digest) -> bool {
        matches!(self.receipts.get(id), Some((_, Receipt::Ok)))
    }

    /// Supply check helper (S9).
    pub fn check_supply(&mut self, replica: ReplicaId, supply: u128, expected: u128) {
        if self.byzantine.contains(&replica) {
            return;
        }
        if supply != expected {
            self.violation(format!(
                "S9 supply: {replica:?} holds total supply {supply}, genesis had {expected}"
            ));
        }
    }

    pub fn report(&mut self, v: String) {
        self.violation(v);
    }

    /// C1: a correct client signs a nonce its account can use — not
    /// `u64::MAX` (no nonce above it: the account could never send again)
    /// and at most `NONCE_AHEAD_MAX` above the account's last nonce in the
    /// chain (beyond it the bank never executes the transfer, and a client
    /// that kept counting from it would stall). A nonce one lying replica
    /// picked would be either.
    pub fn on_client_sign(&mut self, client: usize, account: &PublicKey, nonce: u64) {
        let last = self.account_nonces.get(account).copied().unwrap_or(0);
        let why = if nonce == u64::MAX {
            "u64::MAX: the account could never send again"
        } else if nonce > last.saturating_add(crate::tx::NONCE_AHEAD_MAX) {
            "beyond the bank's nonce jump: it can never execute"
        } else {
            return;
        };
        self.violation(format!(
            "C1 client nonce: client {client} signed nonce {nonce}, its account's last nonce being {last}: {why}"
        ));
    }

    /// A correct replica answered `(exists, balance, nonce)` for `account`.
    pub fn on_account_state(&mut self, account: PublicKey, exists: bool, balance: u64, nonce: u64) {
        self.account_states
            .entry(account)
            .or_default()
            .insert((exists, balance, nonce));
    }

    /// C3: what a client reads as its account (2f+1 alike) is a state a
    /// correct replica gave: no lie gets through.
    pub fn on_client_read(
        &mut self,
        client: usize,
        account: &PublicKey,
        exists: bool,
        balance: u64,
        nonce: u64,
    ) {
        let held = self
            .account_states
            .get(account)
            .is_some_and(|s| s.contains(&(exists, balance, nonce)));
        if !held {
            self.violation(format!(
                "C3 client read: client {client} read its account as (exists {exists}, balance {balance}, nonce {nonce}), which no correct replica answered"
            ));
        }
    }
}

trait VoteFields {
    fn fields(&self) -> (View, u64, Digest);
}
impl VoteFields for PrePrepare {
    fn fields(&self) -> (View, u64, Digest) {
        (self.view, self.seq.0, self.digest)
    }
}
impl VoteFields for Prepare {
    fn fields(&self) -> (View, u64, Digest) {
        (self.view, self.seq.0, self.digest)
    }
}
impl VoteFields for Commit {
    fn fields(&self) -> (View, u64, Digest) {
        (self.view, self.seq.0, self.digest)
    }
}
