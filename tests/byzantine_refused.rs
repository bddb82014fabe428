//! A default build (no cargo feature `byzantine`) has no Byzantine
//! behaviours: `pbft-replica start --byzantine B` parses, then is refused
//! with a one-line usage error (exit code 2) before anything starts.

#![cfg(not(feature = "byzantine"))]

use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const REPLICA: &str = env!("CARGO_BIN_EXE_pbft-replica");

/// Runs `cmd` for at most 10 s (killed by PID on overrun); exit status and
/// stderr.
fn run_bounded(cmd: &mut Command) -> (ExitStatus, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not exit within 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status, reader.join().unwrap())
}

#[test]
fn default_build_refuses_byzantine() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("net");
    let (status, err) = run_bounded(
        Command::new(REPLICA)
            .args(["testnet", "--replicas", "4", "--base-port", "39000"])
            .args(["--out", root.to_str().unwrap()]),
    );
    assert!(status.success(), "{err}");
    let home = root.join("replica-0");
    for behaviour in ["equivocate", "silent", "no-such-behaviour"] {
        let (status, err) = run_bounded(
            Command::new(REPLICA)
                .args(["start", "--home", home.to_str().unwrap()])
                .args(["--byzantine", behaviour]),
        );
        assert_eq!(status.code(), Some(2), "{behaviour}: {err}");
        assert_eq!(
            err.trim(),
            "error: this build has no Byzantine behaviours; rebuild with --features byzantine"
        );
    }
    // Refused before the replica opened anything.
    assert!(!home.join("data").exists());
}
