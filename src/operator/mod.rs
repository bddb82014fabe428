//! Operator tooling for the binaries: generating a testnet's genesis, keys
//! and configurations ([`testnet`]), looking into a stopped replica's store
//! ([`inspect`]), installing the log subscriber ([`telemetry`]) and
//! starting a replica process around the node's runtime ([`start`]).

#[cfg(feature = "rocksdb")]
pub mod inspect;
#[cfg(feature = "rocksdb")]
pub mod start;
pub mod telemetry;
pub mod testnet;
