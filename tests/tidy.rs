//! Tidy checks on the source tree (TigerBeetle-style): the consensus core
//! stays sans-IO, nothing outside the simulator imports it, and every module
//! imports only modules of its own layer or below (the table in `lib.rs`).

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

/// Whether a source file holds only unit tests: a `tests.rs` or anything
/// under a `tests` directory.
fn is_test_code(rel: &Path) -> bool {
    rel.file_name().is_some_and(|n| n == "tests.rs")
        || rel.components().any(|c| c.as_os_str() == "tests")
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
        if is_test_code(file.strip_prefix(&core).expect("under src/consensus")) {
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

/// Every module of the crate and its layer, as the table in `src/lib.rs`
/// gives them. A module may use modules of its own layer or below.
/// `consensus::messages` is a layer of its own below the core; `impl_payload`
/// is a macro `crypto` exports at the crate root.
const LAYERS: &[(&str, u8)] = &[
    ("types", 0),
    ("cluster", 0),
    ("exit", 0),
    ("addr", 0),
    ("teeth", 0),
    ("codec", 1),
    ("crypto", 1),
    ("impl_payload", 1),
    ("keyfile", 1),
    ("tx", 1),
    ("consensus::messages", 2),
    ("consensus", 3),
    ("ledger", 3),
    ("genesis", 3),
    ("storage", 4),
    ("net", 4),
    ("client", 4),
    ("ops", 4),
    ("adversary", 5),
    ("node", 6),
    ("sim", 7),
    ("operator", 7),
];

fn layer_of(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

/// The module a source file (relative to `src/`) belongs to.
fn module_of(rel: &Path) -> String {
    if rel == Path::new("consensus/messages.rs") {
        return "consensus::messages".into();
    }
    let first = rel.components().next().expect("non-empty path");
    let first = first.as_os_str().to_str().expect("utf-8 path");
    first.trim_end_matches(".rs").to_string()
}

/// The crate modules `text` refers to as `crate::NAME` outside comments
/// and outside its unit tests (everything from the first `#[cfg(test)]`
/// at the start of a line, where the inline test module begins).
fn crate_refs(text: &str) -> Vec<String> {
    let mut refs = Vec::new();
    for line in text.lines() {
        let code = line.trim_start();
        if code.starts_with("#[cfg(test)]") {
            break;
        }
        if code.starts_with("//") {
            continue;
        }
        for (at, _) in code.match_indices("crate::") {
            let rest = &code[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if name.is_empty() {
                continue;
            }
            let messages = name == "consensus" && rest[name.len()..].starts_with("::messages");
            refs.push(if messages {
                "consensus::messages".to_string()
            } else {
                name
            });
        }
    }
    refs
}

#[test]
fn scanner_finds_crate_references() {
    let sample = "use crate::net::Transport;\n// crate::sim in a comment\nlet m = crate::consensus::messages::Message::Reply;\n#[cfg(test)]\nuse crate::node;";
    assert_eq!(crate_refs(sample), ["net", "consensus::messages"]);
}

#[test]
fn every_module_imports_only_its_layer_or_below() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut problems = Vec::new();
    for file in rust_files(&src) {
        let rel = file.strip_prefix(&src).expect("under src");
        if rel.starts_with("bin") || rel == Path::new("lib.rs") || is_test_code(rel) {
            continue;
        }
        let module = module_of(rel);
        let Some(layer) = layer_of(&module) else {
            problems.push(format!(
                "{}: module {module} is not in the layer table",
                rel.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(&file).expect("readable");
        for used in crate_refs(&text) {
            if used == module || (module == "consensus" && used == "consensus::messages") {
                continue;
            }
            match layer_of(&used) {
                None => problems.push(format!(
                    "{}: uses crate::{used}, which is not in the layer table",
                    rel.display()
                )),
                Some(l) if l > layer => problems.push(format!(
                    "{}: {module} (L{layer}) uses {used} (L{l})",
                    rel.display()
                )),
                Some(_) => {}
            }
        }
    }
    problems.sort();
    problems.dedup();
    assert!(
        problems.is_empty(),
        "layering broken (src/lib.rs has the table):\n{}",
        problems.join("\n")
    );
}

/// The table in `src/lib.rs` names every module `lib.rs` declares.
#[test]
fn the_layer_table_names_every_module() {
    let lib = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs"))
        .expect("readable lib.rs");
    let table: String = lib
        .lines()
        .filter(|l| l.starts_with("//! | L"))
        .collect::<Vec<_>>()
        .join("\n");
    let declared: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|l| l.trim_end_matches(';'))
        .collect();
    assert!(declared.len() >= 15, "{declared:?}");
    for m in declared {
        assert!(
            table.contains(&format!("[`{m}`]")) || table.contains(&format!("`{m}`")),
            "lib.rs's layer table does not name module {m}"
        );
        assert!(layer_of(m).is_some(), "tests/tidy.rs's LAYERS lacks {m}");
    }
}
