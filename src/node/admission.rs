//! Admission of client requests: a request that would fail is refused
//! (and kept, for a while, to be reconsidered after later blocks); one
//! from a client with too many pending, or while the pending set is
//! (nearly) full, is deferred.

use super::Node;
use crate::consensus::Input;
use crate::storage::Store;
use crate::tx::Receipt;
use crate::types::Time;

/// Requests refused at admission kept to be reconsidered after later blocks
/// (`Node::reconsider_refused`); the oldest goes first.
const REFUSED_KEPT_MAX: usize = 1_024;

impl<S: Store> Node<S> {
    /// After blocks executed: requests refused at admission because the
    /// sender lacked an account or funds, or its nonce was too far ahead,
    /// are admitted now if they no longer would fail and their nonce is
    /// still unused; they are kept for one request timeout at most,
    /// [`REFUSED_KEPT_MAX`] of them. (A refusal says "it would fail now";
    /// as anyone may resend the signed bytes, a client that gave up a
    /// refused transfer must still treat it as able to execute until its
    /// nonce is used.) Replicas
    /// execute a block at slightly different times, so a transfer that its
    /// payer could afford only after an incoming one was refused by the
    /// primary alone and held by the backups: their request timers then
    /// replaced an honest primary (a view-change-storm campaign seed, L3).
    pub(super) fn reconsider_refused(&mut self, now: Time) {
        // One request timeout: before the backups holding it suspect us.
        let keep_ms = self.replica.config().request_timeout_ms;
        let waiting = std::mem::take(&mut self.refused_for_now);
        for (at, tx) in waiting {
            if now.saturating_sub_millis(at) > keep_ms {
                continue;
            }
            let fresh = self
                .bank
                .account(&tx.from)
                .is_some_and(|a| tx.nonce > a.nonce);
            if !fresh {
                // Its nonce was used meanwhile (by another transfer of the
                // client's): it can never execute.
                continue;
            }
            if self.refusal(&tx).is_none() {
                // Its signature is checked again by the core (it may never
                // have been: a refusal comes first).
                self.replica.on_input(now, Input::Request(tx));
            } else {
                self.refused_for_now.push_back((at, tx));
            }
        }
    }

    /// Whether a client's request may be held and ordered: see
    /// [`Node::refusal`]. Counts the refused ones.
    pub(super) fn admissible(&mut self, tx: &crate::tx::Transaction) -> bool {
        if let Some(receipt) = self.refusal(tx) {
            self.requests_unfunded += 1;
            if matches!(
                receipt,
                Receipt::UnknownAccount | Receipt::InsufficientFunds | Receipt::NonceTooFar
            ) && !self.refused_for_now.iter().any(|(_, t)| t == tx)
            {
                self.refused_for_now.push_back((self.last_now, tx.clone()));
                if self.refused_for_now.len() > REFUSED_KEPT_MAX {
                    self.refused_for_now.pop_front();
                }
            }
            return false;
        }
        if self.deferral(tx) {
            self.requests_deferred += 1;
            return false;
        }
        true
    }

    /// Whether a request is turned away for now (the client hears "busy"
    /// and resends later): its sender already has as many requests pending
    /// as one may, the pending set is full, or it is three quarters full
    /// and the sender never executed a transfer — the last quarter is kept
    /// for senders that executed before (issue 24, defect 3: any number of
    /// funded keys, each sending once, could fill the whole set and keep
    /// every established client out). Before, a request the full set
    /// dropped was never answered: its client waited out its timeout.
    pub fn deferral(&self, tx: &crate::tx::Transaction) -> bool {
        if self.replica.holds_pending(tx) {
            return false;
        }
        let (mine, mine_max) = self.replica.pending_of(&tx.from);
        if mine >= mine_max {
            return true;
        }
        let newcomer = self.bank.account(&tx.from).is_none_or(|a| a.nonce == 0);
        let max = self.replica.config().pending_requests_max;
        let held = self.replica.pending_len();
        held >= max || (newcomer && held >= max - max / 4)
    }

    /// The receipt a client's request would execute with at this height,
    /// if it would fail: such a request is not held or ordered (issue 24,
    /// defect 3). Anything an unfunded key signs fails, so throwaway keys
    /// would only fill the pending set, the blocks and the reply cache (they
    /// cost a client nothing); so would transfers beyond the balance and
    /// nonces too far ahead. A used nonce is not refused here: it is
    /// answered from the reply cache or the transaction index. A replica
    /// behind the funding transfer refuses too; the others order it.
    pub fn refusal(&self, tx: &crate::tx::Transaction) -> Option<Receipt> {
        let Some(account) = self.bank.account(&tx.from) else {
            return Some(Receipt::UnknownAccount);
        };
        if tx.nonce <= account.nonce {
            None
        } else if tx.nonce - account.nonce > crate::tx::NONCE_AHEAD_MAX {
            Some(Receipt::NonceTooFar)
        } else if tx.amount == 0 || tx.from == tx.to {
            Some(Receipt::Invalid)
        } else if account.balance < tx.amount {
            Some(Receipt::InsufficientFunds)
        } else {
            None
        }
    }

    /// Client requests refused because they would fail (see
    /// [`Node::refusal`]).
    pub fn requests_unfunded(&self) -> u64 {
        self.requests_unfunded
    }

    /// Client requests from newcomers turned away while the pending set was
    /// three quarters full (see [`Node::deferral`]).
    pub fn requests_deferred(&self) -> u64 {
        self.requests_deferred
    }
}
