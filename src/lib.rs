//! # pbft-ledger
//!
//! A Byzantine-fault-tolerant replicated ledger. `n = 3f + 1` replicas order
//! client transactions with PBFT (Castro & Liskov, OSDI '99 / TOCS '02), sign
//! every protocol message with ed25519, hash with blake3, encode with rkyv,
//! talk QUIC, and append hash-chained blocks to RocksDB.
//!
//! Layers (a module uses modules of its own layer or below, never above;
//! `tests/tidy.rs` checks it):
//!
//! | layer | modules | job |
//! |---|---|---|
//! | L0 | [`types`], [`cluster`], [`exit`], [`addr`], `teeth` | newtypes, quorum arithmetic, process exit codes; genesis addresses (IP or DNS name); deliberately broken variants (feature `teeth`) |
//! | L1 | [`codec`], [`crypto`], [`keyfile`], [`tx`] | validated rkyv frames; keys, digests, `Signed` → `Verified`; key files; transactions, batches, receipts |
//! | L2 | [`consensus::messages`] | the protocol's messages |
//! | L3 | [`consensus`], [`ledger`], [`genesis`] | the sans-IO PBFT core; blocks, state commitment, the bank; the genesis file and network id |
//! | L4 | [`storage`], [`net`], [`client`], [`ops`] | RocksDB and in-memory stores; QUIC mesh and client endpoint; the client library, CLI and benchmark; the operations HTTP endpoint (metrics, probes, status API, dashboard) |
//! | L5 | [`adversary`] | Byzantine strategies (simulator and `--byzantine` replicas) |
//! | L6 | [`node`] | a replica wired to ledger, store and transport |
//! | L7 | [`sim`], [`operator`] | the deterministic simulator; operator tooling (testnet, inspect, logs, process start) |
//! | L8 | `src/bin/*` | thin binaries |
//!
//! `codec` sits below `crypto` (DESIGN.md puts it at L2) because turning a
//! `Signed<T>` into a `Verified<T>` must validate the payload bytes, and only
//! `crypto` may make a `Verified<T>`.

pub mod addr;
pub mod adversary;
pub mod client;
pub mod cluster;
pub mod codec;
pub mod consensus;
pub mod crypto;
pub mod exit;
pub mod genesis;
pub mod keyfile;
pub mod ledger;
pub mod net;
pub mod node;
pub mod operator;
pub mod ops;
pub mod sim;
pub mod storage;
pub mod teeth;
pub mod tx;
pub mod types;
