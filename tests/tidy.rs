//! Tidy checks on the source tree (TigerBeetle-style): the consensus core
//! stays sans-IO, and nothing outside the simulator imports it.

use std::path::Path;

/// Words a sans-IO core must not use: async runtimes, sockets, disks,
/// clocks and unseeded randomness.
const FORBIDDEN_IN_CORE: &[&str] = &[
    "tokio",
    "quinn",
    "rocksdb",
    "std::time",
    "SystemTime",
    "Instant::now",
    "rand::",
    "thread_rng",
    "std::fs",
    "std::net",
    "std::thread",
    "crate::node",
    "crate::storage",
    "crate::net",
    "crate::sim",
];

fn rust_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("readable source dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// Lines of `text` (ignoring comments) that use a forbidden word.
fn offending_lines(text: &str, forbidden: &[&str]) -> Vec<String> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .filter(|l| forbidden.iter().any(|w| l.contains(w)))
        .map(|l| l.trim().to_string())
        .collect()
}

#[test]
fn scanner_finds_forbidden_imports() {
    let sample = "use tokio::sync::mpsc;\n// tokio in a comment is fine\nlet x = 1;";
    assert_eq!(
        offending_lines(sample, FORBIDDEN_IN_CORE),
        vec!["use tokio::sync::mpsc;"]
    );
}

#[test]
fn consensus_core_is_sans_io() {
    let core = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/consensus");
    let mut problems = Vec::new();
    for file in rust_files(&core) {
        if file.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("readable");
        for line in offending_lines(&text, FORBIDDEN_IN_CORE) {
            problems.push(format!("{}: {line}", file.display()));
        }
    }
    assert!(
        problems.is_empty(),
        "the consensus core must not do I/O:\n{}",
        problems.join("\n")
    );
}

#[test]
fn nothing_outside_the_simulator_imports_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut problems = Vec::new();
    for file in rust_files(&src) {
        let rel = file.strip_prefix(&src).expect("under src");
        if rel.starts_with("sim") || rel.starts_with("bin") || rel == Path::new("lib.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("readable");
        for line in offending_lines(&text, &["crate::sim", "pbft_ledger::sim"]) {
            problems.push(format!("{}: {line}", file.display()));
        }
    }
    assert!(
        problems.is_empty(),
        "only the simulator and binaries may use sim:\n{}",
        problems.join("\n")
    );
}
