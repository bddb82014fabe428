//! The built-in application: a bank of ed25519 accounts.
//!
//! Balances come from genesis; a [`Transaction`] moves `amount` from `from` to
//! `to` and is signed by `from`. A transfer that cannot apply is still ordered
//! and gets a failed [`Receipt`]. Total supply never changes (TESTING.md S9).
//!
//! Nonces give exactly-once execution: a transfer applies only if its nonce is
//! above the sender's last nonce. A transfer that fails for lack of funds, for
//! being invalid or for coming from a key with no account still consumes its
//! nonce (a key with no account gets one of no funds), so a replay of a request
//! that was answered "insufficient funds" or "unknown account" can never later
//! succeed: every receipt is final.

use super::commitment::{self, Commitment};
use super::StateMachine;
use crate::crypto::{self, Digest, Domain, PublicKey};
use crate::tx::{Batch, Receipt, Transaction};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Account {
    pub balance: u64,
    /// The highest nonce this account has used; 0 before its first transfer.
    pub nonce: u64,
}

impl Account {
    fn to_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.balance.to_le_bytes());
        b[8..].copy_from_slice(&self.nonce.to_le_bytes());
        b
    }
    fn from_bytes(b: &[u8]) -> Option<Account> {
        if b.len() != 16 {
            return None;
        }
        Some(Account {
            balance: u64::from_le_bytes(b[..8].try_into().ok()?),
            nonce: u64::from_le_bytes(b[8..].try_into().ok()?),
        })
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bank {
    accounts: BTreeMap<PublicKey, Account>,
    /// Keys changed since the last [`StateMachine::take_changes`].
    dirty: BTreeSet<PublicKey>,
    /// The commitment behind the state root; it covers every bucket except
    /// those in `stale`.
    commitment: Commitment,
    /// Buckets changed since the commitment was last brought up to date
    /// (empty between public calls).
    stale: BTreeSet<usize>,
}

impl Bank {
    /// A bank with genesis balances. Fails if the total overflows `u64`.
    pub fn new(genesis: &[(PublicKey, u64)]) -> Result<Bank, String> {
        let mut bank = Bank::default();
        let mut total: u64 = 0;
        for (account, balance) in genesis {
            total = total
                .checked_add(*balance)
                .ok_or("genesis balances overflow u64")?;
            let entry = bank.accounts.entry(*account).or_default();
            entry.balance += balance;
            bank.touch(*account);
        }
        bank.refresh();
        Ok(bank)
    }

    /// Marks an account changed: for the store and for the commitment.
    fn touch(&mut self, key: PublicKey) {
        self.dirty.insert(key);
        self.stale.insert(commitment::bucket_of(&key));
    }

    /// Re-hashes the changed buckets and their ancestors.
    fn refresh(&mut self) {
        let accounts = &self.accounts;
        let leaves = std::mem::take(&mut self.stale).into_iter().map(|b| {
            let (lo, hi) = commitment::bucket_bounds(b);
            let leaf = commitment::leaf(accounts.range(lo..=hi).map(|(k, a)| (k, a.to_bytes())));
            (b, leaf)
        });
        self.commitment.set_leaves(leaves);
    }

    pub fn account(&self, key: &PublicKey) -> Option<Account> {
        self.accounts.get(key).copied()
    }

    pub fn balance(&self, key: &PublicKey) -> u64 {
        self.accounts.get(key).map_or(0, |a| a.balance)
    }

    /// Sum of all balances.
    pub fn total_supply(&self) -> u128 {
        self.accounts.values().map(|a| a.balance as u128).sum()
    }

    pub fn accounts(&self) -> impl Iterator<Item = (&PublicKey, &Account)> {
        self.accounts.iter()
    }

    /// Applies one transfer (its signature is already checked).
    pub fn transfer(&mut self, tx: &Transaction) -> Receipt {
        let receipt = self.apply_one(tx);
        self.refresh();
        receipt
    }

    /// [`Bank::transfer`] without bringing the commitment up to date (a
    /// batch does that once, at its end).
    fn apply_one(&mut self, tx: &Transaction) -> Receipt {
        let Some(sender) = self.accounts.get(&tx.from).copied() else {
            // A receipt is final (issue 24, defect 4): the nonce is recorded,
            // in an account of no funds the state root covers, so the same
            // signed bytes can never execute again — not as a replay, and
            // not once the key is funded (before, they then executed Ok:
            // one transaction, two signed outcomes).
            if tx.nonce > crate::tx::NONCE_AHEAD_MAX {
                return Receipt::NonceTooFar;
            }
            self.accounts.insert(
                tx.from,
                Account {
                    balance: 0,
                    nonce: tx.nonce,
                },
            );
            self.touch(tx.from);
            return Receipt::UnknownAccount;
        };
        let checked = !crate::teeth::nonce_not_checked();
        if checked && tx.nonce <= sender.nonce {
            return Receipt::StaleNonce;
        }
        if checked && tx.nonce - sender.nonce > crate::tx::NONCE_AHEAD_MAX {
            return Receipt::NonceTooFar;
        }
        self.touch(tx.from);
        let sender = self.accounts.get_mut(&tx.from).expect("checked above");
        sender.nonce = tx.nonce;
        if tx.amount == 0 || tx.from == tx.to {
            return Receipt::Invalid;
        }
        if sender.balance < tx.amount {
            return Receipt::InsufficientFunds;
        }
        sender.balance -= tx.amount;
        let receiver = self.accounts.entry(tx.to).or_default();
        // Cannot overflow: the amount came out of a supply that fits in u64.
        receiver.balance += tx.amount;
        self.touch(tx.to);
        Receipt::Ok
    }
}

impl StateMachine for Bank {
    fn apply(&mut self, batch: &Batch) -> Vec<Receipt> {
        let receipts = batch.txs.iter().map(|tx| self.apply_one(tx)).collect();
        self.refresh();
        receipts
    }

    /// O(1): the commitment is kept up to date by every change.
    fn state_root(&self) -> Digest {
        debug_assert!(self.stale.is_empty(), "commitment behind the accounts");
        self.commitment.root(self.accounts.len())
    }

    fn take_changes(&mut self) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        std::mem::take(&mut self.dirty)
            .into_iter()
            .map(|k| {
                let v = self.accounts.get(&k).map(|a| a.to_bytes().to_vec());
                (k.0.to_vec(), v)
            })
            .collect()
    }

    fn export(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.accounts
            .iter()
            .map(|(k, a)| (k.0.to_vec(), a.to_bytes().to_vec()))
            .collect()
    }

    fn import(&mut self, records: &[(Vec<u8>, Vec<u8>)]) -> Result<(), String> {
        let mut accounts = BTreeMap::new();
        for (k, v) in records {
            let key: [u8; 32] = k
                .as_slice()
                .try_into()
                .map_err(|_| format!("account key of {} bytes", k.len()))?;
            let account = Account::from_bytes(v)
                .ok_or_else(|| format!("account record of {} bytes", v.len()))?;
            accounts.insert(PublicKey(key), account);
        }
        self.accounts = accounts;
        self.dirty.clear();
        // Rebuilt in one pass over the ordered keys: the buckets that hold
        // accounts get their leaf, the others keep the empty tree's.
        self.stale.clear();
        let mut leaves = Vec::new();
        let mut iter = self.accounts.iter().peekable();
        while let Some((first, _)) = iter.peek() {
            let b = commitment::bucket_of(first);
            let mut records = Vec::new();
            while let Some((k, a)) = iter.next_if(|(k, _)| commitment::bucket_of(k) == b) {
                records.push((k, a.to_bytes()));
            }
            leaves.push((b, commitment::leaf(records.into_iter())));
        }
        self.commitment = Commitment::default();
        self.commitment.set_leaves(leaves);
        Ok(())
    }
}

/// Digest of genesis balances, used in the genesis hash.
pub fn genesis_digest(genesis: &[(PublicKey, u64)]) -> Digest {
    let mut parts = Vec::with_capacity(genesis.len() * 40);
    for (k, b) in genesis {
        parts.extend_from_slice(&k.0);
        parts.extend_from_slice(&b.to_le_bytes());
    }
    crypto::digest(Domain::Genesis, &[&parts])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{KeyPair, NetworkId};

    fn setup() -> (NetworkId, KeyPair, KeyPair, Bank) {
        let net = NetworkId(Digest([9; 32]));
        let a = KeyPair::from_label("alice");
        let b = KeyPair::from_label("bob");
        let bank = Bank::new(&[(a.public(), 100), (b.public(), 5)]).unwrap();
        (net, a, b, bank)
    }

    #[test]
    fn transfers_receipts_and_supply() {
        let (net, a, b, mut bank) = setup();
        let t =
            |k: &KeyPair, to: &KeyPair, amt, n| Transaction::transfer(net, k, to.public(), amt, n);
        assert_eq!(bank.transfer(&t(&a, &b, 30, 1)), Receipt::Ok);
        assert_eq!(bank.transfer(&t(&a, &b, 30, 1)), Receipt::StaleNonce);
        assert_eq!(
            bank.transfer(&t(&b, &a, 1000, 1)),
            Receipt::InsufficientFunds
        );
        // The failed transfer consumed nonce 1: a replay stays stale even with funds.
        assert_eq!(bank.transfer(&t(&b, &a, 10, 1)), Receipt::StaleNonce);
        assert_eq!(bank.transfer(&t(&b, &a, 10, 3)), Receipt::Ok);
        assert_eq!(bank.transfer(&t(&a, &a, 1, 2)), Receipt::Invalid);
        let stranger = KeyPair::from_label("stranger");
        assert_eq!(
            bank.transfer(&t(&stranger, &a, 1, 1)),
            Receipt::UnknownAccount
        );
        assert_eq!(bank.balance(&a.public()), 80);
        assert_eq!(bank.balance(&b.public()), 25);
        assert_eq!(bank.total_supply(), 105);
    }

    /// Issue 17, defect 4: a nonce far above the last one changes nothing,
    /// so a client tricked into signing `u64::MAX` keeps its account.
    #[test]
    fn a_nonce_too_far_ahead_changes_nothing() {
        let (net, a, b, mut bank) = setup();
        let t = |amt, n| Transaction::transfer(net, &a, b.public(), amt, n);
        assert_eq!(bank.transfer(&t(1, 5)), Receipt::Ok);
        let root = bank.state_root();
        for far in [5 + crate::tx::NONCE_AHEAD_MAX + 1, u64::MAX - 1, u64::MAX] {
            assert_eq!(bank.transfer(&t(1, far)), Receipt::NonceTooFar);
        }
        assert_eq!(bank.state_root(), root, "a refused nonce is not recorded");
        assert_eq!(bank.account(&a.public()).unwrap().nonce, 5);
        // The furthest allowed jump still executes, and the next nonce works.
        assert_eq!(
            bank.transfer(&t(1, 5 + crate::tx::NONCE_AHEAD_MAX)),
            Receipt::Ok
        );
        assert_eq!(
            bank.transfer(&t(1, 6 + crate::tx::NONCE_AHEAD_MAX)),
            Receipt::Ok
        );
    }

    /// Issue 24, defect 4: an "unknown account" receipt is final. Before,
    /// the identical signed bytes executed Ok once the key was funded (and
    /// every replay was ordered again as "unknown account").
    #[test]
    fn an_unknown_account_receipt_is_final() {
        let (net, a, b, mut bank) = setup();
        let stranger = KeyPair::from_label("stranger");
        let pay = Transaction::transfer(net, &stranger, b.public(), 10, 1);
        assert_eq!(bank.transfer(&pay), Receipt::UnknownAccount);
        assert_eq!(bank.account(&stranger.public()).unwrap().nonce, 1);
        assert_eq!(bank.transfer(&pay), Receipt::StaleNonce, "a replay");
        let fund = Transaction::transfer(net, &a, stranger.public(), 50, 1);
        assert_eq!(bank.transfer(&fund), Receipt::Ok);
        assert_eq!(
            bank.transfer(&pay),
            Receipt::StaleNonce,
            "the refused transfer executed after funding"
        );
        assert_eq!(bank.balance(&stranger.public()), 50);
        // A far nonce from an unknown key records nothing.
        let ghost = KeyPair::from_label("ghost");
        let root = bank.state_root();
        let far = Transaction::transfer(net, &ghost, b.public(), 1, u64::MAX);
        assert_eq!(bank.transfer(&far), Receipt::NonceTooFar);
        assert_eq!(bank.state_root(), root);
        assert_eq!(bank.total_supply(), 105);
    }

    /// The state root from a tree whose 65,536 leaves are all hashed, the
    /// empty buckets' too (what `import` did before it skipped them).
    fn every_leaf_root(bank: &Bank) -> Digest {
        let leaves = (0..commitment::BUCKETS).map(|b| {
            let (lo, hi) = commitment::bucket_bounds(b);
            let accounts = bank.accounts.range(lo..=hi).map(|(k, a)| (k, a.to_bytes()));
            (b, commitment::leaf(accounts))
        });
        let mut tree = Commitment::default();
        tree.set_leaves(leaves);
        tree.root(bank.accounts.len())
    }

    /// The incrementally kept root equals the root rebuilt from scratch
    /// (import) after batches that create accounts, fail, and touch one
    /// bucket twice; and every change moves it.
    #[test]
    fn the_incremental_root_matches_a_rebuild() {
        let (net, a, b, mut bank) = setup();
        let mut nonce = 0;
        let mut roots = std::collections::BTreeSet::from([bank.state_root()]);
        for round in 0..30u64 {
            let txs: Vec<Transaction> = (0..1 + round % 4)
                .map(|i| {
                    nonce += 1;
                    let to = KeyPair::from_label(&format!("to-{round}-{i}")).public();
                    match i {
                        0 => Transaction::transfer(net, &a, to, 1, nonce),
                        1 => Transaction::transfer(net, &a, b.public(), 1_000, nonce),
                        2 => Transaction::transfer(net, &KeyPair::from_label("new"), to, 1, nonce),
                        _ => Transaction::transfer(net, &b, a.public(), 1, nonce),
                    }
                })
                .collect();
            bank.apply(&Batch {
                txs,
                timestamp_ms: 0,
            });
            let mut rebuilt = Bank::default();
            rebuilt.import(&bank.export()).unwrap();
            assert_eq!(rebuilt.state_root(), bank.state_root(), "round {round}");
            if round % 10 == 0 {
                assert_eq!(every_leaf_root(&bank), bank.state_root(), "round {round}");
            }
            assert!(
                roots.insert(bank.state_root()),
                "round {round} left the root unchanged"
            );
        }
    }

    #[test]
    fn state_root_export_import_and_changes() {
        let (net, a, b, mut bank) = setup();
        let r0 = bank.state_root();
        let changes = bank.take_changes();
        assert_eq!(changes.len(), 2);
        bank.transfer(&Transaction::transfer(net, &a, b.public(), 1, 1));
        assert_ne!(bank.state_root(), r0);
        assert_eq!(bank.take_changes().len(), 2);
        assert!(bank.take_changes().is_empty());
        let mut copy = Bank::default();
        copy.import(&bank.export()).unwrap();
        assert_eq!(copy.state_root(), bank.state_root());
        assert!(copy.import(&[(vec![1, 2], vec![0; 16])]).is_err());
    }
}
