//! Log set-up for the binaries: tracing to stderr (stdout is reserved for
//! command output), filtered by `EnvFilter` directives, plain or JSON.

use crate::node::config::LogFormat;
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `directives` is an `EnvFilter` string
/// (`info`, `pbft_ledger::net=debug,info`); the error names what was wrong.
pub fn init(directives: &str, format: LogFormat) -> Result<(), String> {
    let filter = EnvFilter::try_new(directives)
        .map_err(|e| format!("log level '{directives}' is not a valid filter: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Plain => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    result.map_err(|e| format!("cannot install the log subscriber: {e}"))
}
