//! `pbft-replica start`: the process around a replica — its configuration,
//! its log subscriber and its async runtime.

use crate::exit;
use crate::node::config::{self, LogFormat};
use crate::node::runtime::{run, Role};
use std::time::Duration;

/// `pbft-replica start`: loads the home's configuration, sets up logging,
/// runs the replica on a multi-threaded runtime and returns the exit code.
/// `log_format` and `log_level` override the configuration; without a
/// `log_level`, `RUST_LOG` overrides it.
pub fn start(
    home: &std::path::Path,
    log_format: Option<LogFormat>,
    log_level: Option<String>,
    role: Role,
) -> i32 {
    let loaded = match config::load(home) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::CONFIG;
        }
    };
    let level = log_level
        .or_else(|| {
            std::env::var("RUST_LOG")
                .ok()
                .filter(|v| !v.trim().is_empty())
        })
        .unwrap_or_else(|| loaded.config.log_level.clone());
    let format = log_format.unwrap_or(loaded.config.log_format);
    if let Err(e) = super::telemetry::init(&level, format) {
        eprintln!("error: log_level: {e}");
        return exit::CONFIG;
    }
    let mut builder = match loaded.config.worker_threads {
        1 => tokio::runtime::Builder::new_current_thread(),
        n => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            if n > 0 {
                b.worker_threads(n);
            }
            b
        }
    };
    let runtime = match builder.enable_all().thread_name("pbft-replica").build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return exit::FAILURE;
        }
    };
    let result = runtime.block_on(run(loaded.runtime, role));
    // Background tasks (closing connections) get a moment, never a hang.
    runtime.shutdown_timeout(Duration::from_secs(2));
    match result {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}
