//! # pbft-ledger
//!
//! A Byzantine-fault-tolerant replicated ledger. `n = 3f + 1` replicas order
//! client transactions with PBFT (Castro & Liskov, OSDI '99 / TOCS '02), sign
//! every protocol message with ed25519, hash with blake3, encode with rkyv,
//! talk QUIC, and append hash-chained blocks to RocksDB.
//!
//! Layers (a lower layer never imports a higher one):
//!
//! | layer | modules | job |
//! |---|---|---|
//! | L0 | [`types`], [`cluster`] | newtypes, quorum arithmetic |
//! | L1 | [`codec`], [`crypto`], [`tx`] | validated rkyv frames; keys, digests, `Signed` → `Verified`; transactions and batches |
//! | L2 | [`consensus::messages`] | the protocol's messages |
//! | L3 | [`consensus`], [`ledger`] | the sans-IO PBFT core; blocks, merkle roots, the bank |
//! | L4 | [`storage`], [`net`] | RocksDB and in-memory stores; QUIC transport |
//! | L5 | [`node`], [`sim`] | a replica wired to ledger and store; the deterministic simulator |
//! | L6 | `src/bin/*` | thin binaries |
//!
//! `codec` sits below `crypto` (DESIGN.md puts it at L2) because turning a
//! `Signed<T>` into a `Verified<T>` must validate the payload bytes, and only
//! `crypto` may make a `Verified<T>`.

pub mod adversary;
pub mod client;
pub mod cluster;
pub mod codec;
pub mod consensus;
pub mod crypto;
pub mod genesis;
pub mod ledger;
pub mod net;
pub mod node;
pub mod sim;
pub mod storage;
#[cfg(feature = "teeth")]
pub mod teeth;
pub mod tx;
pub mod types;
