//! Operator tooling for the binaries: generating a testnet's genesis, keys
//! and configurations ([`testnet`]), looking into a stopped replica's store
//! ([`inspect`]), installing the log subscriber ([`telemetry`]), starting
//! a replica process around the node's runtime ([`start`]) and probing a
//! running one's health ([`probe`]).

#[cfg(feature = "rocksdb")]
pub mod inspect;
pub mod kubernetes;
pub mod probe;
#[cfg(feature = "rocksdb")]
pub mod start;
pub mod telemetry;
pub mod testnet;
