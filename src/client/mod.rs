//! Clients (L4): the client protocol and the library `pbft-client` is built on.
//!
//! A client is an ed25519 key; its account in the bank is the same key. It
//! talks QUIC to every replica's client port ([`crate::net::ClientConnector`]
//! pins each replica's genesis key) over one session per replica: a stream
//! carrying request and response records, many requests in flight
//! (`net::client` has the record format, [`proto`] the frames).
//!
//! Submitting follows PBFT §4.1: the client sends the signed transaction to
//! *all* replicas (so a faulty primary cannot hide it: backups hold it and
//! start their request timers), and accepts the result once **f+1 replicas
//! sent matching signed replies** — at least one of them is correct, and a
//! correct replica replies only after the transaction committed. Every reply
//! is verified against the genesis keys, must come from the replica it was
//! asked of, and must name this transaction (id and nonce); [`quorum`] holds
//! that rule, sans-IO, for this client and the simulator's alike. Every wait
//! is bounded by the client's timeout.

pub mod bench;
pub mod cli;
#[cfg(feature = "byzantine")]
pub mod hostile;
pub mod output;
pub mod proto;
pub mod quorum;
pub mod relay;
mod session;
pub mod watch;

pub use quorum::{RefusalQuorum, ReplyDecision, ReplyQuorum};
pub use session::{
    next_nonce_of, Client, ClientError, Committed, Gathered, QueryAnswer, ReplicaAnswer,
};
