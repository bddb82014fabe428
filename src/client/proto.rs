//! The client protocol's frames: a [`ClientRequest`] and the
//! [`ClientResponse`] that answers it (`codec::encode_frame` /
//! `decode_frame`), each carried in one record of a session stream
//! (`net::client`).
//!
//! A `Submit` is answered only once the transaction executed (with the
//! replica's [`ReplyProof`]) or when the replica gives up on it (a
//! [`SubmitRejected`] reason); queries are answered at once from the
//! replica's own state. Answers to queries are *one replica's view* and are
//! not signed: a client that needs to trust one takes the value that f+1
//! replicas agree on, as it does for replies.

use crate::codec::{self, CodecError};
use crate::consensus::messages::ReplyProof;
use crate::crypto::{merkle, Digest, PublicKey};
use crate::ledger;
use crate::tx::{Receipt, Transaction};
use rkyv::{Archive, Deserialize, Serialize};

/// Largest request frame a replica accepts from a client (a transfer is
/// ~200 bytes; everything else is smaller).
pub const REQUEST_BYTES_MAX: usize = 4 * 1024;

/// Largest response frame a client accepts (a reply proof or a query answer).
pub const RESPONSE_BYTES_MAX: usize = 64 * 1024;

/// What a client asks one replica.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum ClientRequest {
    /// Order and execute this transaction; answer with the reply and its proof.
    Submit(Transaction),
    /// An account's balance and last nonce.
    Balance(PublicKey),
    /// Where a transaction (by id) landed.
    Tx(Digest),
    /// A committed block by height.
    Block(u64),
    /// The replica's view of the protocol.
    Status,
}

/// Why a replica gave up on a submitted transaction.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubmitRejected {
    /// The signature does not verify for this network.
    BadSignature,
    /// The account already used this nonce (or a later one) and the replica
    /// has no reply cached for it; `account_nonce` is the last nonce used.
    StaleNonce { account_nonce: u64 },
    /// The transaction did not execute within the replica's submit timeout.
    Timeout,
    /// The replica is waiting on too many submissions already.
    Busy,
    /// The replica is shutting down.
    ShuttingDown,
    /// The sender has no account at this replica's height: nothing it
    /// signs can execute, so it is not ordered (fund the account first).
    UnknownAccount,
    /// At this replica's height the transfer would fail with this receipt
    /// (insufficient funds, an invalid transfer, a nonce too far ahead), so
    /// it is not ordered: it would only take room in the blocks.
    WouldFail(Receipt),
}

impl std::fmt::Display for SubmitRejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SubmitRejected::BadSignature => write!(f, "bad signature"),
            SubmitRejected::StaleNonce { account_nonce } => {
                write!(
                    f,
                    "nonce already used (account's last nonce is {account_nonce})"
                )
            }
            SubmitRejected::Timeout => write!(f, "not executed within the replica's timeout"),
            SubmitRejected::Busy => write!(f, "replica busy"),
            SubmitRejected::ShuttingDown => write!(f, "replica shutting down"),
            SubmitRejected::UnknownAccount => {
                write!(f, "the sender has no account (it was never funded)")
            }
            SubmitRejected::WouldFail(receipt) => {
                write!(f, "it would fail: {}", receipt.as_str())
            }
        }
    }
}

/// An account as one replica sees it.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct BalanceInfo {
    pub account: PublicKey,
    /// False if the account never held funds and no transfer of it was
    /// ordered (balance and nonce are then 0).
    pub exists: bool,
    pub balance: u64,
    /// The highest nonce the account has used; the next transfer uses more.
    pub nonce: u64,
    /// The replica's executed height when it answered.
    pub height: u64,
}

/// Where a transaction landed, and the proof that it is in that block: the
/// path from its leaf (`ledger::tx_leaf`) to the block's transaction root
/// (`crypto::merkle`), which the block's header holds.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct TxInfo {
    pub tx_id: Digest,
    pub height: u64,
    pub index: u32,
    pub receipt: Receipt,
    pub from: PublicKey,
    pub to: PublicKey,
    pub amount: u64,
    pub nonce: u64,
    /// The sender's signature (the leaf covers it).
    pub signature: [u8; 64],
    /// Hash of the header of the block at `height`.
    pub block_hash: Digest,
    /// That header's transaction root.
    pub tx_root: Digest,
    /// Transactions in the block (the tree's leaf count).
    pub tx_count: u32,
    /// Siblings from the transaction's leaf up to `tx_root`.
    pub path: Vec<Digest>,
}

impl TxInfo {
    /// The transaction these fields describe.
    pub fn transaction(&self) -> Transaction {
        Transaction {
            from: self.from,
            to: self.to,
            amount: self.amount,
            nonce: self.nonce,
            signature: self.signature,
        }
    }

    /// Whether the fields prove what they claim: `tx_id` is the id of the
    /// transaction they describe, and `path` leads from its leaf, at
    /// `index` of `tx_count`, to `tx_root`. (That `tx_root` and
    /// `block_hash` belong to the chain is for f+1 replicas to say.)
    pub fn included(&self) -> bool {
        let tx = self.transaction();
        tx.id() == self.tx_id
            && merkle::root_from_path(
                ledger::tx_leaf(&tx),
                self.index as usize,
                self.tx_count as usize,
                &self.path,
            ) == Some(self.tx_root)
    }
}

/// A committed block's header and certificate summary.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct BlockInfo {
    pub height: u64,
    pub block_hash: Digest,
    pub parent_hash: Digest,
    pub batch_digest: Digest,
    pub tx_root: Digest,
    /// State root before this block executed.
    pub state_root: Digest,
    pub timestamp_ms: u64,
    pub tx_count: u32,
    /// Distinct signers of the stored commit certificate.
    pub commit_signers: u32,
    /// Their replica ids, ascending.
    pub signers: Vec<u32>,
}

/// One replica's view of the protocol.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct StatusInfo {
    pub replica: u32,
    pub view: u64,
    /// `Some(v)` while a view change to `v` is in progress.
    pub changing_to: Option<u64>,
    pub primary: u32,
    /// Executed height (= last executed seq).
    pub height: u64,
    pub block_hash: Digest,
    pub stable_checkpoint: u64,
    pub pending_requests: u64,
    /// Replicas with a live mesh connection (excluding itself).
    pub connected_peers: u32,
    /// View changes this replica started (since it started).
    pub view_changes_started: u64,
    /// New views it entered (since it started).
    pub new_views_entered: u64,
    /// Frames from peers that did not decode as a message (dropped).
    pub undecodable_frames: u64,
    /// Peer and client input the core refused, by reason (since it started).
    pub ignored: Vec<(String, u64)>,
}

/// A replica's answer to one [`ClientRequest`].
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum ClientResponse {
    /// The transaction executed; the replica's reply with the proof that
    /// it signed it.
    Reply(ReplyProof),
    /// The replica gave up on the submitted transaction.
    Rejected(SubmitRejected),
    Balance(BalanceInfo),
    /// `None` if the replica has not executed such a transaction.
    Tx(Option<TxInfo>),
    /// `None` if the replica has no block at that height.
    Block(Option<BlockInfo>),
    Status(StatusInfo),
    /// The request frame could not be decoded.
    Malformed,
}

impl ClientRequest {
    pub fn to_frame(&self) -> Vec<u8> {
        codec::encode_frame(self)
    }
    pub fn from_frame(frame: &[u8]) -> Result<ClientRequest, CodecError> {
        codec::decode_frame(frame, REQUEST_BYTES_MAX)
    }
}

impl ClientResponse {
    pub fn to_frame(&self) -> Vec<u8> {
        codec::encode_frame(self)
    }
    pub fn from_frame(frame: &[u8]) -> Result<ClientResponse, CodecError> {
        codec::decode_frame(frame, RESPONSE_BYTES_MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{KeyPair, NetworkId};

    #[test]
    fn frames_round_trip_and_garbage_is_refused() {
        let net = NetworkId(Digest([7; 32]));
        let a = KeyPair::from_label("proto-a");
        let tx = Transaction::transfer(net, &a, a.public(), 5, 1);
        for req in [
            ClientRequest::Submit(tx.clone()),
            ClientRequest::Balance(a.public()),
            ClientRequest::Tx(tx.id()),
            ClientRequest::Block(3),
            ClientRequest::Status,
        ] {
            assert_eq!(ClientRequest::from_frame(&req.to_frame()).unwrap(), req);
        }
        let resp = ClientResponse::Rejected(SubmitRejected::StaleNonce { account_nonce: 4 });
        assert_eq!(ClientResponse::from_frame(&resp.to_frame()).unwrap(), resp);
        assert!(ClientRequest::from_frame(&[1, 2, 3]).is_err());
        let info = landed(std::slice::from_ref(&tx), 0);
        for resp in [
            ClientResponse::Tx(Some(info.clone())),
            ClientResponse::Tx(None),
            ClientResponse::Block(Some(BlockInfo {
                height: 4,
                block_hash: Digest([1; 32]),
                parent_hash: Digest([2; 32]),
                batch_digest: Digest([3; 32]),
                tx_root: info.tx_root,
                state_root: Digest([5; 32]),
                timestamp_ms: 6,
                tx_count: 1,
                commit_signers: 3,
                signers: vec![0, 2, 3],
            })),
        ] {
            assert_eq!(ClientResponse::from_frame(&resp.to_frame()).unwrap(), resp);
        }
        assert!(ClientRequest::from_frame(&vec![1; REQUEST_BYTES_MAX + 1]).is_err());
    }

    /// What a replica answers for `txs[index]` of a block holding `txs`.
    fn landed(txs: &[Transaction], index: usize) -> TxInfo {
        let leaves: Vec<Digest> = txs.iter().map(ledger::tx_leaf).collect();
        let tx = &txs[index];
        TxInfo {
            tx_id: tx.id(),
            height: 9,
            index: index as u32,
            receipt: Receipt::Ok,
            from: tx.from,
            to: tx.to,
            amount: tx.amount,
            nonce: tx.nonce,
            signature: tx.signature,
            block_hash: Digest([8; 32]),
            tx_root: ledger::tx_root(txs),
            tx_count: txs.len() as u32,
            path: merkle::path(&leaves, index).expect("a leaf"),
        }
    }

    #[test]
    fn a_tx_answer_proves_its_inclusion_and_nothing_else() {
        let net = NetworkId(Digest([7; 32]));
        let a = KeyPair::from_label("proto-a");
        let txs: Vec<Transaction> = (1..=5)
            .map(|n| Transaction::transfer(net, &a, KeyPair::from_label("b").public(), n, n))
            .collect();
        for i in 0..txs.len() {
            assert!(landed(&txs, i).included(), "index {i}");
        }
        let good = landed(&txs, 3);
        let mutations: [fn(&mut TxInfo); 7] = [
            |t| t.amount += 1,
            |t| t.signature[0] ^= 1,
            |t| t.index = 2,
            |t| t.tx_count = 6,
            |t| t.tx_root.0[0] ^= 1,
            |t| t.tx_id.0[0] ^= 1,
            |t| {
                t.path.pop();
            },
        ];
        for (k, mutate) in mutations.iter().enumerate() {
            let mut t = good.clone();
            mutate(&mut t);
            assert!(!t.included(), "mutation {k} still proves inclusion");
        }
    }
}
