//! Process exit codes shared by `pbft-replica`, `pbft-client` and
//! `pbft-sim` (README, "Exit codes").

/// Success.
pub const OK: i32 = 0;
/// A runtime failure (network, I/O, a command that failed).
pub const FAILURE: i32 = 1;
/// Bad command-line usage (clap's own code).
pub const USAGE: i32 = 2;
/// The configuration, genesis or a key file is invalid.
pub const CONFIG: i32 = 3;
/// The store is corrupt, locked, from another network or another version.
pub const STORAGE: i32 = 4;
/// Client: no f+1 matching answers in time (network unreachable or slow).
pub const TIMEOUT: i32 = 5;
/// Client: the transaction was rejected or executed with a failed receipt.
pub const REJECTED: i32 = 6;
