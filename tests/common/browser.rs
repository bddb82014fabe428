//! Tools from the system (installed by scripts/test.sh) and headless
//! Chromium, for the tests that check a page in a real browser.

use super::{run_bounded, text};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The program `name` on PATH, or a panic saying how to install it.
pub fn tool(name: &str) -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "{name} not found on PATH: scripts/test.sh installs it \
         (apt-get install prometheus chromium)"
    );
}

/// Runs headless Chromium with the profile directory `dir` and `args`
/// (bounded to 90 s); returns its stdout.
pub fn chromium(dir: &Path, args: &[&str]) -> String {
    let out = run_bounded(
        Command::new(tool("chromium"))
            .args(["--headless", "--no-sandbox", "--disable-gpu"])
            .args(["--no-first-run", "--disable-extensions"])
            .arg(format!("--user-data-dir={}", dir.display()))
            .args(args),
        Duration::from_secs(90),
    );
    assert!(
        out.status.success(),
        "chromium failed: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Where CI artefacts go: `$CARGO_TARGET_DIR/artefacts` (or
/// `target/artefacts`).
pub fn artefacts() -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let dir = Path::new(&target).join("artefacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Saves a screenshot of `url` (a `WIDTHxHEIGHT` window, `budget_ms` of
/// virtual time to draw) as artefact `name`, checks it is a real PNG and
/// returns its path.
pub fn screenshot(profile: &Path, url: &str, window: &str, budget_ms: u32, name: &str) -> PathBuf {
    let shot = artefacts().join(name);
    let _ = std::fs::remove_file(&shot);
    chromium(
        profile,
        &[
            &format!("--virtual-time-budget={budget_ms}"),
            &format!("--window-size={window}"),
            &format!("--screenshot={}", shot.display()),
            url,
        ],
    );
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "not a real screenshot"
    );
    shot
}
